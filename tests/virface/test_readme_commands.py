"""Every facerun command of facerec_virface/README.md's "How to do what the original does" table, run on a few
LFW faces in the repository's meta-list format (file names replaced, a tiny network and 1 step per stage)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

import facerec

README = Path(__file__).resolve().parents[2] / "facerec_virface" / "README.md"
NET = {"width": 4, "image_size": 32, "embedding_size": 16}


def test_readme_commands_run(tmp_path, shared_data, readme):
    from facerec_virface.checkpoints import save_checkpoint

    src = shared_data / "lfw" / "lfw-aligned-112x112"
    root = tmp_path / "MS1M"
    labelled, unlabelled = [], []
    for label, person in zip((123, 4567, 85707), ("Aaron_Peirsol", "Abdullah_Gul", "Abel_Pacheco")):  # MS1M ids
        (root / person).mkdir(parents=True)
        for k, f in enumerate(sorted((src / person).glob("*.jpg"))[:3]):
            shutil.copy(f, root / person / f.name)
            (labelled if k < 2 else unlabelled).append(f"{person}/{f.name} {label if k < 2 else 0}")
    (tmp_path / "labeled_meta.txt").write_text("\n".join(labelled) + "\n")
    (tmp_path / "unlabeled_meta.txt").write_text("\n".join(unlabelled) + "\n")
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "_epoch_9.pytorch",
        epoch=10,
        backbone=facerec.create("backbone", "virface-resnet50", **NET),
        head=facerec.create("head", "virinstance", embedding_size=16, num_classes=3),
        generator=facerec.create("generator", "virface", embedding_size=16),
    )
    commands = readme.commands(README)
    assert len(commands) == 7
    net = [a for k, v in NET.items() for a in ("--param", f"backbone.{k}={v}")]
    done = readme.run(
        commands,
        {"MS1M": str(root), "lfw/pairs.txt": str(shared_data / "lfw" / "pairs.txt")},
        cwd=tmp_path,
        extra={
            "facerun train": [
                *net,
                "--param",
                "train.steps=1",
                "--param",
                "train.batch_size=4",
                "--param",
                "train.lr=0.001",
                "--param",
                "recipe.unlabel_batch_size=2",
                "--param",
                "recipe.gen_num=2",
                "--param",
                "protocol.pairs_per_fold=4",
                "--param",
                "protocol.num_folds=2",
            ],
            "facerun eval": [*net, "--param", "protocol.max_pairs=20", "-q"],
            "facerun virface convert": [
                "--embedding-size",
                "16",
                "--param",
                "backbone.width=4",
                "--param",
                "backbone.image_size=32",
            ],
        },
    )
    metrics = json.loads((tmp_path / "RUN" / "metrics.json").read_text())
    assert {"pretrain", "generator", "virclass", "virface"} <= set(metrics)
    assert metrics["virclass"]["unlabelled_batch"] == 2 and metrics["virclass"]["step"] == 1
    assert json.loads((tmp_path / "RUN2" / "metrics.json").read_text())["virclass"]["step"] == 1
    assert {p.name for p in (tmp_path / "PARTS").iterdir()} == {
        "backbone.safetensors",
        "head.safetensors",
        "generator.safetensors",
    }
    assert any(p.stdout.startswith("pairs:") for p in done.values())
