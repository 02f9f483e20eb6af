"""The quick preset's trunk stage learns: cross-entropy falls well below ln(C) (real CLI, tiny config).

Guards against the failure the demo once had: with unit-norm embeddings feeding a plain linear fc2 the
logits are bounded by |W| and the loss sat at ln(C) for the whole run."""

from __future__ import annotations

import json
import math

CLASSES = 10


def _trunk_ce(run_facerun, out, *extra):
    run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "trunk",
        "--out",
        str(out),
        "--dataset",
        "synthetic-lowres",
        "--param",
        f"dataset.num_ids={CLASSES}",
        "--param",
        "dataset.per_id=6",
        "--param",
        "backbone.layers=(1,1,1,1)",
        "--param",
        "backbone.image_size=24",
        "--param",
        "recipe.scales=(8,)",
        "--param",
        "train.batch_size=20",
        "--param",
        "train.log_every=1",
        "--param",
        "protocol.num_pairs=20",
        "--param",
        "protocol.num_ids=10",
        "--steps",
        "80",
        *extra,
    )
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["ce"] for r in log if r.get("kind") == "train" and "ce" in r]


def test_quick_trunk_stage_learns(run_facerun, tmp_path):
    ce = _trunk_ce(run_facerun, tmp_path / "quick")
    chance = math.log(CLASSES)
    assert ce[0] > 0.8 * chance  # step 1 is at chance (the check below is not vacuous)
    # and it learns: below 0.23 over the last 5 of 80 steps (measured ~0.03; with the unit-norm embeddings the
    # quick preset once used, the same run ends near 0.9)
    assert sum(ce[-5:]) / 5 < 0.1 * chance, ce[::10]
