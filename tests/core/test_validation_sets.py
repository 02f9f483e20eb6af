"""insightface .bin validation sets as the periodic evaluator of a training run on a RecordIO set
(``--protocol pairs --param protocol.data=DIR/*.bin``), as arcface_torch's CallBackVerification."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import facerec
from facerec.data.recordio_dataset import RecordIODataset
from facerec.data.writers import write_dataset
from facerec.engine.validation_sets import ValidationSets
from facerec.errors import DataError


def make_sets(root: Path) -> RecordIODataset:
    """train.rec (6 identities x 4 faces) and two .bin pair sets made of its JPEGs beside it."""
    synth = facerec.create("dataset", "synthetic", num_ids=6, per_id=4, image_size=48)
    write_dataset(synth, root / "train.rec", "rec")
    ds = RecordIODataset(root / "train.rec")
    for name, step in (("lfw", 1), ("cfp_fp", 3)):
        images, same = [], []
        for i in range(12):
            a = (i * step) % len(ds)
            b = a + 1 if i % 2 == 0 and a % 4 != 3 else (a + 5) % len(ds)
            images += [ds.read_raw(a), ds.read_raw(b)]
            same.append(bool(ds.labels[a] == ds.labels[b]))
        (root / f"{name}.bin").write_bytes(pickle.dumps((images, same), protocol=2))
    return ds


def test_sets_are_evaluated_separately_and_keep_their_highest_accuracy(tmp_path):
    make_sets(tmp_path)
    sets = ValidationSets(lambda d: facerec.create("protocol", "pairs", data=d, n_folds=2), str(tmp_path / "*.bin"))
    assert list(sets.sets) == ["cfp_fp", "lfw"]
    torch.manual_seed(0)
    net = facerec.create("backbone", "small-cnn", width=8, embedding_size=16, image_size=48).eval()
    got = sets.evaluate(net).metrics
    for name in ("lfw", "cfp_fp"):
        alone = facerec.create("protocol", "pairs", data=str(tmp_path / f"{name}.bin"), n_folds=2).evaluate(net)
        assert got[f"{name}/accuracy"] == alone.metrics["accuracy"]
        assert got[f"{name}/n_pairs"] == 12
        assert got[f"{name}/accuracy_highest"] == got[f"{name}/accuracy"]
    sets.highest["lfw"] = 2.0  # a better earlier evaluation is kept
    assert sets.evaluate(net).metrics["lfw/accuracy_highest"] == 2.0
    with pytest.raises(DataError, match="matches no file"):
        ValidationSets(lambda d: facerec.create("protocol", "pairs", data=d), str(tmp_path / "nothing*.bin"))


def test_training_from_rec_runs_the_bin_sets_every_n_steps(tmp_path, run_facerun):
    make_sets(tmp_path)
    run = tmp_path / "run"
    proc = run_facerun(
        "train",
        "--backbone",
        "small-cnn",
        "--dataset",
        "rec",
        "--param",
        f"dataset.path={tmp_path / 'train.rec'}",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--eval-every",
        "1",
        "--protocol",
        "pairs",
        "--param",
        f"protocol.data={tmp_path}/*.bin",
        "--param",
        "protocol.n_folds=2",
        "--param",
        "backbone.width=8",
        "--out",
        str(run),
    )
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]
    for name in ("lfw", "cfp_fp"):
        accs = [r[f"pairs/{name}/accuracy"] for r in evals]
        highest = [r[f"pairs/{name}/accuracy_highest"] for r in evals]
        assert highest == [max(accs[: i + 1]) for i in range(len(accs))]
        assert f"eval step 1 | pairs/{name}: accuracy" in proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pairs/lfw/accuracy_highest"] >= max(r["pairs/lfw/accuracy"] for r in evals)
    assert metrics["pairs/cfp_fp/n_pairs"] == 12
    bad = run_facerun(
        "train",
        "--backbone",
        "small-cnn",
        "--dataset",
        "rec",
        "--param",
        f"dataset.path={tmp_path / 'train.rec'}",
        "--steps",
        "1",
        "--protocol",
        "pairs",
        "--param",
        f"protocol.data={tmp_path}/none*.bin",
        "--out",
        str(tmp_path / "r2"),
        check=False,
    )
    assert bad.returncode == 1 and "matches no file" in bad.stderr and "Traceback" not in bad.stderr
