"""An explicit ``--param train.steps=N`` (or ``--steps N``) wins over a preset's epochs, and explicit
epochs win over a preset's steps (issue 24 item 1). The plugins' recipes have their own tests
(tests/<plugin>/test_explicit_steps.py); this one covers the engine and the standard recipe."""

from __future__ import annotations

import json

import pytest

from facerec.engine import TrainConfig
from facerec.errors import ParameterError


def test_explicit_steps_beat_preset_epochs():
    preset = TrainConfig().with_overrides({"epochs": 20, "batch_size": 128})
    assert preset.total_steps(10_000) == 1563
    user = preset.with_overrides({"steps": 2})
    assert user.epochs is None
    assert user.total_steps(10_000) == 2
    assert user.total_steps() == 2


def test_explicit_epochs_beat_preset_steps():
    preset = TrainConfig().with_overrides({"steps": 400, "batch_size": 10})
    user = preset.with_overrides({"epochs": 2})
    assert user.steps is None
    assert user.total_steps(100) == 20


def test_steps_and_epochs_together_are_refused():
    with pytest.raises(ParameterError, match="train.steps or train.epochs"):
        TrainConfig().with_overrides({"steps": 2, "epochs": 1})


def test_standard_recipe_paper_preset_runs_the_given_steps(tmp_path, run_facerun):
    out = tmp_path / "run"
    run_facerun(
        "train",
        "--backbone",
        "small-cnn",
        "--preset",
        "paper",
        "--param",
        "train.steps=2",
        "--param",
        "backbone.image_size=32",
        "--param",
        "backbone.width=8",
        "--param",
        "dataset.num_ids=10",
        "--param",
        "dataset.per_id=4",
        "--param",
        "train.batch_size=8",
        "--param",
        "train.warmup_steps=0",
        "--param",
        "protocol.pairs_per_fold=10",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["total_steps"] == 2 and metrics["step"] == 2
    steps = [
        json.loads(line)["step"]
        for line in (out / "log.jsonl").read_text().splitlines()
        if json.loads(line).get("kind") == "train"
    ]
    assert max(steps) == 2


def test_amp_off_from_the_command_line():
    # --param train.amp=off parses as the boolean False; it means "off"
    assert TrainConfig().with_overrides({"amp": False}).amp == "off"
