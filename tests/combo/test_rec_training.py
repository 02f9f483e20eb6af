"""An insightface-style dataset folder (train.rec, train.idx, property, lfw.bin, cfp_fp.bin) trains
IResNet-50 (core's) through core's rec dataset with the .bin sets as the periodic evaluator."""

from __future__ import annotations

import json
import pickle

import facerec
from facerec.data.recordio_dataset import RecordIODataset
from facerec.data.writers import write_dataset


def test_iresnet50_trains_on_rec_with_bin_evaluator(tmp_path, run_facerun):
    synth = facerec.create("dataset", "synthetic", num_ids=5, per_id=4, image_size=112)
    write_dataset(synth, tmp_path / "train.rec", "rec")
    ds = RecordIODataset(tmp_path / "train.rec")
    for name, shift in (("lfw", 0), ("cfp_fp", 2)):
        images, same = [], []
        for i in range(10):
            a = (2 * i + shift) % len(ds)
            b = (a + (1 if i % 2 == 0 else 6)) % len(ds)
            images += [ds.read_raw(a), ds.read_raw(b)]
            same.append(bool(ds.labels[a] == ds.labels[b]))
        (tmp_path / f"{name}.bin").write_bytes(pickle.dumps((images, same), protocol=2))
    run = tmp_path / "run"
    proc = run_facerun(
        "train",
        "--backbone",
        "iresnet50",
        "--dataset",
        "rec",
        "--param",
        f"dataset.path={tmp_path / 'train.rec'}",
        "--param",
        "backbone.width=8",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--eval-every",
        "1",
        "--protocol",
        "pairs",
        "--param",
        f"protocol.data={tmp_path}/*.bin",
        "--param",
        "protocol.n_folds=2",
        "--out",
        str(run),
    )
    evals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]
    assert all(0.0 <= r[f"pairs/{s}/accuracy"] <= 1.0 for r in evals for s in ("lfw", "cfp_fp"))
    assert "eval step 1 | pairs/lfw: accuracy" in proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 2 and "pairs/cfp_fp/accuracy_highest" in metrics
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "iresnet50" and config["dataset"] == "rec"
    assert (run / "backbone.safetensors").is_file()
