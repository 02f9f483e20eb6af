"""Every facerun command of facerec_vec2face/README.md's "How to do what the original does" table, run on a few
LFW faces with a tiny generator and small estimators (file names replaced, tiny sizes and steps added)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

import facerec

README = Path(__file__).resolve().parents[2] / "facerec_vec2face" / "README.md"
NETWORK = ("facerun weights pull",)  # downloads: not run here


def test_readme_commands_run(tmp_path, shared_data, readme):
    from facerec.weights import save_weights

    from facerec_vec2face.sixdrepnet import SixDRepNet

    src = shared_data / "lfw" / "lfw-aligned-112x112"
    for person in ("Aaron_Peirsol", "Abdullah_Gul", "Abel_Pacheco"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for f in sorted((src / person).glob("*.jpg"))[:2]:
            shutil.copy(f, tmp_path / "faces" / person / f.name)
    (tmp_path / "refs").mkdir()
    for f in sorted((tmp_path / "faces").glob("*/*_0001.jpg"))[:2]:
        shutil.copy(f, tmp_path / "refs" / f.name)
    torch.manual_seed(0)
    save_weights(
        facerec.create("backbone", "iresnet18", width=8),
        tmp_path / "id.safetensors",
        {"arch": "iresnet18", "params": {"width": 8}},
    )
    small_pose = {"blocks": [1, 1, 1, 1], "width": [0.25, 0.25, 0.25, 0.25]}
    save_weights(
        SixDRepNet(blocks=(1, 1, 1, 1), width=(0.25,) * 4),
        tmp_path / "pose.safetensors",
        {"arch": "sixdrepnet", "params": small_pose},
    )
    torch.save(
        {
            "model_vec2face": facerec.create("generator", "vec2face", config="tiny").state_dict(),
            "args": argparse.Namespace(model="tiny"),
        },
        tmp_path / "w.pth",
    )
    np.save(tmp_path / "centres.npy", (np.random.default_rng(0).standard_normal((8, 512)) * 1.4).astype(np.float32))

    commands = [c for c in readme.commands(README) if not c.startswith(NETWORK)]
    assert len(commands) == 11
    ident = str(tmp_path / "id.safetensors")
    subst = {
        "WebFace4M": str(tmp_path / "faces"),
        "refs": str(tmp_path / "refs"),
        "arcface-r100-glint360k.pth": ident,
        "magface-r100-glint360k.pth": ident,
        "6DRepNet_300W_LP_AFLW2000.pth": str(tmp_path / "pose.safetensors"),
        "iresnet100": "iresnet18",
        "vec2face_generator.pth": str(tmp_path / "w.pth"),
        "center_feature_examples.npy": str(tmp_path / "centres.npy"),
        "base": "tiny",
        "50000": "2",
        "2000": "0.5",
        "10": "3",
        "50": "2",
        "5": "2",
    }
    done = readme.run(
        commands,
        subst,
        cwd=tmp_path,
        extra={
            "facerun extract": ["--param", "backbone.width=8", "--no-optimize", "-q"],
            "facerun generate": ["--param", "config=tiny", "--param", "attr_iters=1", "-q"],
            "facerun --backbone": [
                "--param",
                "train.steps=2",
                "--param",
                "train.amp='off'",
                "--param",
                "train.batch_size=4",
                "--param",
                "backbone.width=4",
                "--param",
                "backbone.image_size=32",
                "--param",
                "protocol.pairs_per_fold=4",
                "--param",
                "protocol.num_folds=2",
            ],
        },
    )
    assert (tmp_path / "WebFace4M.lmdb").is_file() and (tmp_path / "WebFace4M-b.lmdb.mask.npy").is_file()
    assert (tmp_path / "workspace" / "24_try" / "generator.safetensors").is_file()
    assert any("resumed" in p.stdout or "generator.safetensors" in p.stdout for p in done.values())
    assert len(list((tmp_path / "test").glob("*/*.jpg"))) == 3  # --format folder: one image per identity
    report = json.loads((tmp_path / "test-45.lmdb.report.json").read_text())
    assert report["run"]["samples"] == 3 and "samples_accepted" in report["run"]
    assert json.loads((tmp_path / "hsface_run" / "metrics.json").read_text())["step"] == 2
