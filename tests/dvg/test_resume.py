"""Exact resume of the DVG loops (dual generators, identity sampler) and of the whole dvg recipe through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import facerec
from facerec.api import TensorDataset

from facerec_dvg.dvg_neurips import DVGNeurIPS
from facerec_dvg.dvgface import DVGFace
from facerec_dvg.lightcnn import LightCNN29
from facerec_dvg.loop_checkpoint import LoopCheckpoint

from .test_cli import TINY


def _paired(n_ids: int = 4, per: int = 2, size: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n_ids).repeat_interleave(2 * per)
    modality = torch.tensor([1] * per + [0] * per).repeat(n_ids)
    return TensorDataset(labels, images=torch.rand(len(labels), 3, size, size, generator=g), modality=modality)


def _new(kind: str):
    torch.manual_seed(0)
    if kind == "dvg":
        gen = DVGFace(image_size=16, width=0.125, num_attributes=4)
    else:
        gen = DVGNeurIPS(hdim=8, image_size=16, width=0.125)
    gen.set_face_model(LightCNN29(image_size=16, width=0.125, embedding_size=256))
    return gen


@pytest.mark.parametrize("kind", ["dvg", "dvg-neurips"])
def test_generator_fit_stops_and_resumes_exactly(tmp_path, kind):
    data = _paired()
    straight = _new(kind)
    log_a: list = []
    a = straight.fit(data, steps=4, batch_size=2, seed=3, log=log_a)
    path = tmp_path / "gen.safetensors"
    first = _new(kind)
    stopped = first.fit(data, steps=4, batch_size=2, seed=3, checkpoint=LoopCheckpoint(path, stop_at=2))
    assert stopped["step"] == 2 and path.is_file()
    resumed = _new(kind)  # a fresh process: only the checkpoint carries the state
    log_b: list = []
    b = resumed.fit(data, steps=4, batch_size=2, seed=3, log=log_b, checkpoint=LoopCheckpoint(path))
    assert a["step"] == b["step"] == 4 and a["loss"] == b["loss"]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4] and log_a == log_b
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # a finished checkpoint is not trained again: the same state and the same last losses
    again = _new(kind)
    c = again.fit(data, steps=4, batch_size=2, seed=3, checkpoint=LoopCheckpoint(path))
    assert c == b and all(torch.equal(sa[k], again.state_dict()[k]) for k in sa)


def test_identity_sampler_stops_and_resumes_exactly(tmp_path):
    feats = torch.randn(20, 256, generator=torch.Generator().manual_seed(0))
    straight = _new("dvg")
    straight.fit_identity_sampler(feats, steps=4, batch_size=8, seed=2)
    path = tmp_path / "sampler.safetensors"
    stopped = _new("dvg").fit_identity_sampler(
        feats, steps=4, batch_size=8, seed=2, checkpoint=LoopCheckpoint(path, stop_at=1)
    )
    assert stopped["sampler_step"] == 1
    resumed = _new("dvg")
    resumed.fit_identity_sampler(feats, steps=4, batch_size=8, seed=2, checkpoint=LoopCheckpoint(path))
    sa, sb = straight.identity_sampler.state_dict(), resumed.identity_sampler.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_recipe_stops_and_resumes_every_stage_exactly(run_facerun, tmp_path):
    """Interrupted in face-model pretraining, then in the dual generator, resumed twice: the same generator,
    fine-tuned backbones and metrics as a straight run. Finished stages are restored, not rerun."""
    args = ["train", "--backbone", "lightcnn29", "--generator", "dvg", *TINY, "--param", "recipe.generator_steps=4"]
    env = {"OMP_NUM_THREADS": "1"}  # the same threads in every run: bit-identical arithmetic
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_facerun(*args, "--out", str(straight), env=env)
    proc = run_facerun(*args, "--out", str(split), "--param", "train.stop_at=1", env=env, check=False)
    assert proc.returncode != 0 and "stage 'pretrain' stopped at step 1 of 2" in proc.stderr
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    # continues pretraining (1 -> 2), trains the sampler, stops the generator at step 3 of 4
    proc = run_facerun(*args, "--out", str(split), "--resume", "--param", "train.stop_at=3", env=env, check=False)
    assert proc.returncode != 0 and "stage 'generator' stopped at step 3 of 4" in proc.stderr, proc.stderr
    assert (split / "checkpoints" / "generator-last.safetensors").is_file()
    assert not (split / "generator.safetensors").exists()
    run_facerun(*args, "--out", str(split), "--resume", env=env)
    for name in (
        "generator.safetensors",
        "backbone-face-model.safetensors",
        "backbone-with.safetensors",
        "backbone-without.safetensors",
    ):
        a, b = load_file(str(straight / name)), load_file(str(split / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, split))
    for key in (
        "with/synthetic-nir-vis/rank1",
        "without/synthetic-nir-vis/rank1",
        "generator/pix",
        "generator/sampler_rec",
        "identity-check/generated/same-cos",
    ):
        assert ma[key] == mb[key], key
    assert mb["pretrain/loss"] > 0  # (a mean over the log window, which the interruption split: not compared)
    # the generator's log is whole (steps 1..4), though its steps ran in two processes
    log = [json.loads(line) for line in (split / "generator_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # the recipe's generator file carries its build parameters (64 px, width 0.25): generate repeats none
    run_facerun(
        "generate",
        "--generator",
        "dvg",
        "--weights",
        str(split / "generator.safetensors"),
        "--ids",
        "2",
        "--per-id",
        "2",
        "--out",
        str(tmp_path / "g.lmdb"),
        "-q",
    )
    assert facerec.create("dataset", "lmdb", path=str(tmp_path / "g.lmdb")).batch([0])["image"].shape[-1] == 64
