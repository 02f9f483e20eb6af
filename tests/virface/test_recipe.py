"""The virface recipe through the real CLI: the stage chain with `facerun train --stage`, and the demo table."""

from __future__ import annotations

import json
import math

import torch

import facerec
from facerec_virface.checkpoints import read_parts

TINY = [
    "--param",
    "train.steps=2",
    "--param",
    "train.batch_size=4",
    "--param",
    "recipe.unlabel_batch_size=3",
    "--param",
    "recipe.gen_num=2",
    "--param",
    "dataset.num_ids=4",
    "--param",
    "dataset.per_id=2",
    "--param",
    "recipe.unlabeled_params={'num_ids': 6}",
    "--param",
    "protocol.pairs_per_fold=4",
    "--param",
    "protocol.num_folds=2",
    "--param",
    "backbone.image_size=32",
    "--param",
    "backbone.width=4",
    "--param",
    "backbone.embedding_size=16",
]


def test_stage_chain_pretrain_generator_virface_virclass(tmp_path, run_facerun):
    out = str(tmp_path / "run")
    common = ["train", "--backbone", "virface-resnet18", "--recipe", "virface", "--out", out, *TINY]
    early = run_facerun(*common, "--stage", "virface", check=False)
    assert early.returncode != 0 and "run --stage generator" in early.stderr and "Traceback" not in early.stderr
    for stage in ("pretrain", "generator", "virface", "virclass"):
        if stage == "virclass":  # virclass starts from pretrain; take it explicitly from the stage file
            init = tmp_path / "run/stages/pretrain.safetensors"
            run_facerun(*common, "--stage", stage, "--param", f"recipe.init={init}")
        else:
            run_facerun(*common, "--stage", stage)
    parts = {
        s: read_parts(tmp_path / "run" / "stages" / f"{s}.safetensors")
        for s in ("pretrain", "generator", "virface", "virclass")
    }
    assert set(parts["pretrain"]) == {"backbone", "head"} and set(parts["virface"]) == {"backbone", "head", "generator"}
    # the generator stage trains the generator only: backbone and head are exactly the pretrained ones
    for part in ("backbone", "head"):
        assert all(torch.equal(v, parts["generator"][part][k]) for k, v in parts["pretrain"][part].items())
    # ... and the virface stage starts from it and changes the backbone
    assert not torch.equal(
        parts["virface"]["backbone"]["feature.weight"], parts["generator"]["backbone"]["feature.weight"]
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) >= {"pretrain", "generator", "virface", "virclass"}
    assert "synthetic-pairs/accuracy" in metrics["virface"] and "train/mse" in metrics["generator"]
    # the saved backbone is a plain state dict that facerec.load_weights reads
    b = facerec.create("backbone", "virface-resnet18", image_size=32, width=4, embedding_size=16)
    facerec.load_weights(b, tmp_path / "run" / "backbone.safetensors")


def test_demo_table(tmp_path, run_facerun):
    out = tmp_path / "demo"
    proc = run_facerun("--backbone", "virface-resnet18", "--out", str(out), "--param", "recipe.seeds=2", *TINY)
    for method in ("pretrain", "pretrain-continued", "virclass", "virface"):
        assert f"| {method} |" in proc.stdout
    demo = json.loads((out / "demo.json").read_text())
    assert [r["method"] for r in demo["table"]] == ["pretrain", "pretrain-continued", "virclass", "virface"]
    assert len(demo["per_seed"]) == 2 and all(0.0 <= r["accuracy mean"] <= 1.0 for r in demo["table"])
    assert "VirFace demo" in (out / "summary.md").read_text()


def test_bad_knob_is_one_line(tmp_path, run_facerun):
    proc = run_facerun(
        "train",
        "--backbone",
        "virface-resnet18",
        "--recipe",
        "virface",
        "--stage",
        "virfase",
        "--out",
        str(tmp_path / "x"),
        check=False,
    )
    assert proc.returncode != 0 and "stages pretrain, generator, virclass, virface" in proc.stderr
    proc = run_facerun(
        "--backbone", "virface-resnet18", "--param", "recipe.gen_nums=3", "--out", str(tmp_path / "y"), check=False
    )
    assert proc.returncode != 0 and "recipe.gen_nums" in proc.stderr and "Traceback" not in proc.stderr


def test_quick_pretrain_learns(tmp_path, run_facerun):
    """The quick preset (32 px, s=16 m=0, lr 0.1) learns from scratch: the ArcFace loss ends well below ln C,
    the loss of a uniform guess (the old preset's s=32 m=0.5 at lr 0.01 stayed far above it)."""
    num_ids = 20
    run_facerun(
        "train",
        "--backbone",
        "virface-resnet18",
        "--recipe",
        "virface",
        "--stage",
        "pretrain",
        "--out",
        str(tmp_path / "run"),
        "--param",
        "train.steps=150",
        "--param",
        f"dataset.num_ids={num_ids}",
        "--param",
        "dataset.per_id=10",
        "--param",
        "protocol.pairs_per_fold=20",
        "--param",
        "protocol.num_folds=2",
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["pretrain"]
    assert metrics["train/loss"] < 0.5 * math.log(num_ids), metrics["train/loss"]
