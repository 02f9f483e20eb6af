"""The quick preset's face model really learns (it used to sit at ln(classes)), through the real CLI."""

from __future__ import annotations

import json
import math

# quick-preset face model (LightCNN-29, 32 px, width 0.25, BN) and its pretraining recipe, on 20 synthetic VIS
# identities; everything after the pretraining is cut to a couple of steps
SMALL = [
    "--param",
    "dataset.num_ids=4",
    "--param",
    "protocol.num_ids=8",
    "--param",
    "protocol.nir_per_id=2",
    "--param",
    "recipe.pretrain_ids=20",
    "--param",
    "recipe.pretrain_per_id=10",
    "--param",
    "recipe.pretrain_steps=200",
    "--param",
    "recipe.sampler_steps=3",
    "--param",
    "recipe.generator_steps=2",
    "--param",
    "recipe.generator_batch=4",
    "--param",
    "recipe.num_pairs=8",
    "--param",
    "recipe.stage1_steps=2",
    "--param",
    "recipe.stage2_steps=2",
    "--param",
    "recipe.write_generated=none",
]


def test_quick_face_model_learns_well_below_chance_loss(run_facerun, tmp_path):
    out = tmp_path / "run"
    run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--out", str(out), *SMALL)
    metrics = json.loads((out / "metrics.json").read_text())
    chance = math.log(20)
    assert metrics["pretrain/chance_loss"] == chance
    # the mean training loss over the last logged window: chance is ln(20) = 3.0
    assert metrics["pretrain/loss"] < 0.4 * chance, metrics["pretrain/loss"]
    assert "face-model/synthetic-nir-vis/rank1" in metrics
    assert "| face model: pretraining | synthetic VIS faces | 20 | 200 | 200 x 32 |" in (out / "summary.md").read_text()


def test_unknown_pretrain_head_is_a_one_line_error(run_facerun, tmp_path):
    proc = run_facerun(
        "--backbone",
        "lightcnn29",
        "--generator",
        "dvg",
        "--out",
        str(tmp_path / "r"),
        "--param",
        "recipe.pretrain_head=nohead",
        check=False,
    )
    assert proc.returncode != 0 and "recipe.pretrain_head: no head named 'nohead'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
