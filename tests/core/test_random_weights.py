"""Numbers from untrained weights are labelled as such: `facerun eval` / `extract` without --weights warn on
stderr, and the eval report says "random weights" at the top."""

from __future__ import annotations


import facerec
from facerec.data.writers import write_dataset
from facerec.weights import save_weights

BB = [
    "--backbone",
    "small-cnn",
    "--param",
    "backbone.width=4",
    "--param",
    "backbone.image_size=32",
    "--param",
    "backbone.embedding_size=8",
]
PAIRS = ["-p", "synthetic-pairs", "--param", "protocol.num_folds=2", "--param", "protocol.pairs_per_fold=8", "-q"]


def test_eval_without_weights_warns_and_the_report_says_so(run_facerun, tmp_path):
    proc = run_facerun("eval", *BB, *PAIRS, "--out", str(tmp_path / "rep"))
    assert "RANDOM weights" in proc.stderr and "facerun eval without --weights" in proc.stderr
    summary = (tmp_path / "rep" / "summary.md").read_text().splitlines()
    assert summary[0] == "# Evaluation report" and "**random weights**" in summary[2]
    # with weights: no warning, no label
    model = facerec.create("backbone", "small-cnn", width=4, image_size=32, embedding_size=8)
    save_weights(model, tmp_path / "w.safetensors")
    proc = run_facerun(
        "eval", *BB, *PAIRS, "--weights", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "rep2")
    )
    assert "RANDOM" not in proc.stderr
    assert "random weights" not in (tmp_path / "rep2" / "summary.md").read_text()


def test_extract_without_weights_warns(run_facerun, tmp_path):
    data = facerec.create("dataset", "synthetic", num_ids=2, per_id=2, image_size=32)
    write_dataset(data, tmp_path / "faces", "folder")
    proc = run_facerun(
        "extract", *BB, "--data", str(tmp_path / "faces"), "--out", str(tmp_path / "f.safetensors"), "-q"
    )
    assert "facerun extract without --weights" in proc.stderr and "RANDOM weights" in proc.stderr
    assert (tmp_path / "f.safetensors").is_file()
