"""Issue 24 items 1 and 18 for VirFace: the paper preset follows train.py per stage (B_u = 128; 21 epochs at lr
0.01 with B_l 256 for pretrain, 11 for generator / VirClass / VirFace with their decay epochs), and an
explicit train.steps wins over those epochs."""

from __future__ import annotations

import json

import pytest

from facerec import recipes as R

TINY = [
    "--param",
    "train.batch_size=4",
    "--param",
    "dataset.num_ids=4",
    "--param",
    "dataset.per_id=2",
    "--param",
    "recipe.unlabeled_params={'num_ids': 130}",
    "--param",
    "recipe.gen_num=2",
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


def _config(stage: str, preset: str = "paper", train: dict | None = None) -> R.PipelineConfig:
    params = {k: {} for k in R.PARAM_KINDS}
    params["train"] = dict(train or {})
    return R.PipelineConfig(backbone="virface-resnet18", recipe="virface", stage=stage, preset=preset, params=params)


@pytest.mark.parametrize(
    "stage, epochs, lr, batch, decay",
    [
        ("pretrain", 21, 0.01, 256, (8, 12, 15, 18)),
        ("generator", 11, 0.1, 128, (8,)),
        ("virclass", 11, 0.1, 128, (4, 6, 8)),
        ("virface", 11, 0.1, 128, (8,)),
    ],
)
def test_paper_preset_per_stage(stage, epochs, lr, batch, decay):
    from facerec_virface.recipe import VIRFACE_TRAIN, _settings, stage_config, virface_recipe

    config = _config(stage)
    tcfg = stage_config(config, R.train_config(config, VIRFACE_TRAIN["paper"]), stage)
    assert (tcfg.epochs, tcfg.lr, tcfg.batch_size) == (epochs, lr, batch)
    assert tcfg.milestones == pytest.approx(tuple(d / epochs for d in decay))
    assert _settings(virface_recipe.resolve(config)).unlabel_batch_size == 128
    assert _settings(virface_recipe.resolve(_config(stage, "quick"))).unlabel_batch_size == 32
    # explicit settings win over the preset's
    mine = _config(stage, train={"steps": 3, "lr": 0.5})
    tcfg = stage_config(mine, R.train_config(mine, VIRFACE_TRAIN["paper"]), stage)
    assert (tcfg.epochs, tcfg.total_steps(10_000), tcfg.lr) == (None, 3, 0.5)


def test_paper_stages_run_the_given_steps(tmp_path, run_facerun):
    out = tmp_path / "run"
    common = [
        "train",
        "--backbone",
        "virface-resnet18",
        "--recipe",
        "virface",
        "--preset",
        "paper",
        "--out",
        str(out),
        "--param",
        "train.steps=1",
        *TINY,
    ]
    run_facerun(*common, "--stage", "pretrain")
    run_facerun(*common, "--stage", "virclass")
    metrics = json.loads((out / "metrics.json").read_text())
    for stage in ("pretrain", "virclass"):
        assert metrics[stage]["total_steps"] == 1 and metrics[stage]["step"] == 1, metrics[stage]
    assert metrics["virclass"]["unlabelled_batch"] == 128 and metrics["virclass"]["labelled_batch"] == 4
    assert metrics["pretrain"]["lr"] == 0.01


def test_paper_stage_counts_epochs_as_the_original(tmp_path, run_facerun):
    """With epochs (the paper preset's unit) a stage runs epochs x batches per epoch: the labelled list alone for
    pretrain, the longer of labelled / unlabelled for VirClass (it used to stop with 'train.epochs needs a dataset
    with a length')."""
    out = tmp_path / "run"
    common = [
        "train",
        "--backbone",
        "virface-resnet18",
        "--recipe",
        "virface",
        "--preset",
        "paper",
        "--out",
        str(out),
        "--param",
        "train.epochs=1",
        *TINY,
        "--param",
        "recipe.unlabel_batch_size=40",
    ]
    run_facerun(*common, "--stage", "pretrain")  # 8 labelled images, B_l 4: 2 batches
    run_facerun(*common, "--stage", "virclass")  # 130 unlabelled, B_u 40: 3 batches
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pretrain"]["total_steps"] == 2 and metrics["virclass"]["total_steps"] == 3
