"""The dcr recipe through the real facerun CLI (subprocess), on tiny settings."""

from __future__ import annotations

import json

from safetensors.torch import load_file

TINY = (
    "--param",
    "backbone.layers=(1,1,1,1)",
    "--param",
    "backbone.image_size=32",
    "--param",
    "train.batch_size=8",
    "--param",
    "train.log_every=1",
)
PAIRS = ("--param", "protocol.num_pairs=20", "--param", "protocol.num_ids=10")


def _casia(root):
    return ("--dataset", "dcr-casia", "--param", f"dataset.root={root}")


def test_stages_resume_and_scface(run_facerun, dcr_root, tmp_path):
    out = tmp_path / "run"
    # trunk stage interrupted at step 2 of 4, then resumed: identical to a straight 4-step run
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
        *_casia(dcr_root),
        *TINY,
        *PAIRS,
        "--steps",
        "4",
        "--param",
        "train.stop_at=2",
    )
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
        "--resume",
        *_casia(dcr_root),
        *TINY,
        *PAIRS,
        "--steps",
        "4",
    )
    straight = tmp_path / "straight"
    run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "trunk",
        "--out",
        str(straight),
        *_casia(dcr_root),
        *TINY,
        *PAIRS,
        "--steps",
        "4",
    )
    a, b = load_file(str(out / "backbone.safetensors")), load_file(str(straight / "backbone.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    ca = load_file(str(out / "checkpoints" / "trunk-last.safetensors"))
    cb = load_file(str(straight / "checkpoints" / "trunk-last.safetensors"))
    assert (ca["model/criterion/center.centers"] == cb["model/criterion/center.centers"]).all()
    # branch stage starts from this run's trunk; the trunk stays untouched, branches train
    run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "branch",
        "--out",
        str(out),
        *_casia(dcr_root),
        *TINY,
        *PAIRS,
        "--steps",
        "2",
        "--momentum",
        "0.5",
        "--weight-decay",
        "0.01",
    )
    c = load_file(str(out / "backbone.safetensors"))
    assert all((c[k] == a[k]).all() for k in a if k.startswith("trunk."))
    assert not (c["branches.1.fc1.weight"] == a["branches.1.fc1.weight"]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"trunk", "branch"} <= set(metrics)
    assert "dcr-synthetic-lowres/branch_acc_8" in " ".join(metrics["branch"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("stage") == "branch" and "coupling" in json.dumps(r) for r in log)
    # SCface fine-tuning from the trained model (20 -> 130 classes: classifiers re-initialised)
    sc = tmp_path / "scface"
    run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "scface",
        "--out",
        str(sc),
        "--dataset",
        "dcr-scface",
        "--param",
        f"dataset.root={dcr_root}",
        *TINY,
        "--steps",
        "2",
        "--param",
        f"recipe.init={out / 'backbone.safetensors'}",
    )
    m = json.loads((sc / "metrics.json").read_text())["scface"]
    assert {"scface/dcr-scface/rank1_d1", "scface/dcr-scface/branch_rank1_d3"} <= set(m)
    assert "re-initialised for 130 classes" in (sc / "summary.md").read_text()


def test_bad_input_is_one_line(run_facerun, dcr_root, tmp_path):
    proc = run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "branch",
        "--out",
        str(tmp_path / "empty"),
        *_casia(dcr_root),
        *TINY,
        "--steps",
        "1",
        check=False,
    )
    assert proc.returncode != 0 and "needs a trained trunk" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_facerun(
        "train",
        "--backbone",
        "dcr-trunk",
        "--recipe",
        "dcr",
        "--stage",
        "decoder",
        "--out",
        str(tmp_path / "x"),
        *_casia(dcr_root),
        check=False,
    )
    assert proc.returncode != 0 and "trunk, branch, scface" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_facerun(
        "train",
        "--backbone",
        "small-cnn",
        "--recipe",
        "dcr",
        "--stage",
        "trunk",
        "--out",
        str(tmp_path / "y"),
        *_casia(dcr_root),
        "--steps",
        "1",
        check=False,
    )
    assert proc.returncode != 0 and "needs a DCR backbone" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_on_synthetic_lowres_reports_trunk_and_branches(run_facerun, tmp_path):
    """`facerun --backbone dcr-trunk --dataset synthetic-lowres` (tiny): both stages, per-resolution table."""
    out = tmp_path / "demo"
    proc = run_facerun(
        "--backbone",
        "dcr-trunk",
        "--dataset",
        "synthetic-lowres",
        "--out",
        str(out),
        *TINY,
        *PAIRS,
        "--param",
        "train.steps=2",
        "--param",
        "dataset.num_ids=8",
        "--param",
        "dataset.per_id=2",
    )
    assert "8 px: trunk | branches" in proc.stdout
    summary = (out / "summary.md").read_text()
    assert "Verification accuracy per resolution" in summary and "| 20 px |" in summary
    assert "the trunk on mean LR accuracy" in summary and "mean LR accuracy" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["resolution"]: r for r in metrics["per_resolution"]}
    assert set(rows) == {"8 px", "12 px", "16 px", "20 px", "hr", "mean"}
    assert all(0.0 <= rows[k]["trunk"] <= 1.0 and 0.0 <= rows[k]["branches"] <= 1.0 for k in rows)
    assert (out / "checkpoints" / "trunk-last.safetensors").is_file()
    assert (out / "checkpoints" / "branch-last.safetensors").is_file()
