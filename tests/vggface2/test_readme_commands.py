"""Every facerun command of facerec_vggface2/README.md's "How to do what the original does" table, run on a
tiny dataset in the VGGFace2 layout (the README placeholders replaced by its paths)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

README = Path(__file__).resolve().parents[2] / "facerec_vggface2" / "README.md"


def _original_resume_checkpoint(path: Path, state: dict) -> None:
    """A checkpoint.pth.tar as the original trainer writes it: AverageMeter objects of its `utils` module."""
    utils = types.ModuleType("utils")

    class AverageMeter:
        def __init__(self):
            self.val, self.avg, self.sum, self.count = 0.5, 0.5, 0.5, 1

    AverageMeter.__module__, AverageMeter.__qualname__ = "utils", "AverageMeter"
    utils.AverageMeter = AverageMeter
    sys.modules["utils"] = utils
    try:
        meter = AverageMeter()
        torch.save(
            {
                "epoch": 3,
                "iteration": 1000,
                "arch": "ResNet",
                "optim_state_dict": {},
                "model_state_dict": state,
                "best_top1": 0.1,
                "batch_time": meter,
                "losses": meter,
                "top1": meter,
                "top5": meter,
            },
            path,
        )
    finally:
        del sys.modules["utils"]


def test_readme_commands_run(vgg, ijb, tmp_path, readme):
    root, model = vgg
    commands = readme.commands(README)
    assert len(commands) >= 9
    (root / "test_list.txt").write_text((root / "train_list.txt").read_text())
    _original_resume_checkpoint(tmp_path / "checkpoint.pth.tar", model.state_dict())
    pkl = str(root / "resnet50_ft_weight.pkl")
    # one released-format file stands for both architectures here (a SE-ResNet-50 .pkl is another 170 MB)
    subst = {
        "resnet50_ft_weight.pkl": pkl,
        "senet50_ft_weight.pkl": pkl,
        "senet50_ft": "resnet50_ft",
        "vggface2-senet50": "vggface2-resnet50",
        "VGGFace2": str(root),
        "IJBB": str(ijb),
        "test_list.txt": str(root / "test_list.txt"),
        "val_list.txt": str(root / "mixed_list.txt"),
        "train_list.txt": str(root / "train_list.txt"),
        "identity_meta.csv": str(root / "identity_meta.csv"),
        "checkpoint.pth.tar": str(tmp_path / "checkpoint.pth.tar"),
        "1000": "2",
        "2000": "3",
    }
    done = readme.run(
        commands, subst, cwd=tmp_path, extra={"facerun vggface2 train": ["--batch-size", "2"], "facerun eval": ["-q"]}
    )
    assert load_file(str(tmp_path / "feats.safetensors"))["features"].shape == (6, 2048)
    assert not torch.equal(
        load_file(str(tmp_path / "feats.safetensors"))["features"],
        load_file(str(tmp_path / "feats-flipped.safetensors"))["features"],
    )
    assert torch.allclose(
        load_file(str(tmp_path / "feats-avg.safetensors"))["features"].norm(dim=1), torch.ones(6), atol=1e-5
    )
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 3
    assert any("resumed at step 2" in p.stdout for p in done.values())
    assert json.loads((tmp_path / "result.json").read_text())["skipped_test_split_images"] == 2
    assert any(p.stdout.startswith("ijb:") for p in done.values())
