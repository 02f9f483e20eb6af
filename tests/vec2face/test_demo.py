"""The demo as a user runs it: facerun --backbone iresnet50 --generator vec2face (tiny settings)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_real_vs_generated(run_facerun, tmp_path):
    out = tmp_path / "run"
    proc = run_facerun(
        "--backbone",
        "iresnet50",
        "--generator",
        "vec2face",
        "--out",
        str(out),
        "--param",
        "train.steps=3",
        "--param",
        "train.batch_size=16",
        "--param",
        "recipe.gen_steps=3",
        "--param",
        "recipe.gen_batch=8",
        "--param",
        "dataset.num_ids=6",
        "--param",
        "dataset.per_id=3",
        "--param",
        "protocol.pairs_per_fold=8",
        "--param",
        "protocol.num_folds=2",
        "--param",
        "backbone.width=4",
        cwd=tmp_path,
    )
    assert "run directory" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "vec2face"  # chosen by the generator class attribute
    metrics = json.loads((out / "metrics.json").read_text())
    real = [k for k in metrics if k.startswith("real/synthetic-pairs/")]
    gen = [k for k in metrics if k.startswith("generated/synthetic-pairs/")]
    assert real and gen and {k.split("/", 1)[1] for k in real} == {k.split("/", 1)[1] for k in gen}
    assert metrics["generator"]["step"] == 3
    assert metrics["generated"]["train/items_per_s"] > 0
    for name in ("vec2face-generated.png", "vec2face-reconstructions.png"):
        assert (out / "pictures" / name).stat().st_size > 100
    summary = (out / "summary.md").read_text()
    assert "generated" in summary and "real" in summary
    assert (out / "backbone-generated.safetensors").is_file()


def test_demo_bad_recipe_knob(run_facerun, tmp_path):
    proc = run_facerun(
        "--backbone",
        "iresnet50",
        "--generator",
        "vec2face",
        "--param",
        "recipe.nope=1",
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_hsface_recipe_in_process(tmp_path):
    from facerec.recipes import run_pipeline

    metrics = run_pipeline(
        backbone="iresnet50-se",
        recipe="hsface",
        out=str(tmp_path / "h"),
        echo=None,
        params=[
            "train.steps=2",
            "train.batch_size=8",
            "dataset.num_ids=4",
            "dataset.per_id=2",
            "protocol.pairs_per_fold=8",
            "protocol.num_folds=2",
            "backbone.width=4",
        ],
    )
    assert metrics["step"] == 2 and "synthetic-pairs/accuracy" in metrics
    assert (tmp_path / "h" / "backbone-train.safetensors").is_file()
