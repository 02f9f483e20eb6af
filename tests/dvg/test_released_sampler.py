"""The released identity sampler (dec_epoch_45.pth.tar, MS-Celeb-1M) stays frozen in the dvg recipe: the paper
samples its new identities from it."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from facerec_dvg.dvgface_nets import IdentitySampler

from .test_cli import TINY


def _released_file(path):
    """A sampler file in the original's container: {'epoch', 'state_dict'} with DataParallel's module. keys."""
    torch.manual_seed(7)
    state = {f"module.{k}": v for k, v in IdentitySampler(256, 256).state_dict().items()}
    torch.save({"epoch": 45, "state_dict": state}, path)
    return {k[len("module.") :]: v for k, v in state.items()}


def test_released_identity_sampler_is_used_frozen(run_facerun, tmp_path):
    released = _released_file(tmp_path / "dec_epoch_45.pth.tar")
    out = tmp_path / "run"
    run_facerun(
        "train",
        "--backbone",
        "lightcnn29",
        "--generator",
        "dvg",
        "--out",
        str(out),
        *TINY,
        "--param",
        f"generator.identity_sampler_weights={tmp_path / 'dec_epoch_45.pth.tar'}",
    )
    saved = load_file(str(out / "generator.safetensors"))
    for key, value in released.items():  # bit for bit the released weights after the whole recipe
        assert torch.equal(saved[f"identity_sampler.{key}"], value), key
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["generator/identity_sampler"].startswith("released, frozen") and "generator/sampler_rec" not in metrics
    )
    assert "identity sampler: released weights, frozen" in (out / "summary.md").read_text()
    assert not (out / "checkpoints" / "identity-sampler-last.safetensors").exists()


def test_sampler_steps_zero_needs_the_released_sampler(run_facerun, tmp_path):
    proc = run_facerun(
        "train",
        "--backbone",
        "lightcnn29",
        "--generator",
        "dvg",
        "--out",
        str(tmp_path / "r"),
        *TINY,
        "--param",
        "recipe.sampler_steps=0",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "generator.identity_sampler_weights=dec_epoch_45.pth.tar" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
