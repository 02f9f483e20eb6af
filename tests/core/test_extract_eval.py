"""facerun extract / facerun eval run as a user would (subprocess), on real LFW faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import facerec
from facerec.data.decode import read_image
from facerec.protocols.common import load_features, save_features
from facerec.weights import save_weights

BB = [
    "--backbone",
    "small-cnn",
    "--param",
    "backbone.width=4",
    "--param",
    "backbone.image_size=32",
    "--param",
    "backbone.embedding_size=16",
]


@pytest.fixture(scope="module")
def mini(shared_data, tmp_path_factory):
    """8 same + 8 different LFW pairs with their images, and trained-looking weights (random BN stats)."""
    lfw = shared_data / "lfw"
    root = tmp_path_factory.mktemp("mini") / "lfw"
    lines = (lfw / "pairs.txt").read_text().splitlines()
    chosen = lines[1:9] + lines[301:309]
    for line in chosen:
        tok = line.split()
        names = [(tok[0], tok[1]), (tok[0], tok[2])] if len(tok) == 3 else [(tok[0], tok[1]), (tok[2], tok[3])]
        for name, n in names:
            src = lfw / "lfw-aligned-112x112" / name / f"{name}_{int(n):04d}.jpg"
            (root / "images" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / "images" / name / src.name)
    (root / "pairs.txt").write_text("\n".join(chosen) + "\n")
    torch.manual_seed(1)
    model = facerec.create("backbone", "small-cnn", width=4, image_size=32, embedding_size=16)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    weights = save_weights(model, root.parent / "w.safetensors")
    return root, model.eval(), Path(weights)


def test_extract_folder_matches_eager_forward(mini, run_facerun, tmp_path):
    root, model, weights = mini
    out = tmp_path / "feats.safetensors"
    proc = run_facerun(
        "extract",
        *BB,
        "--weights",
        str(weights),
        "--data",
        str(root / "images"),
        "--out",
        str(out),
        "--batch-size",
        "5",
        "--flip",
    )
    assert "images/s" in proc.stdout and "items/s" in proc.stderr  # summary line and progress bar
    table = load_features(out)
    files = sorted((root / "images").rglob("*.jpg"))
    assert sorted(table.keys_list) == sorted(str(f.relative_to(root / "images")) for f in files)
    assert table.meta["flip"] == "True" and table.meta["backbone"] == "small-cnn"
    imgs = torch.stack([read_image(root / "images" / k, 32) for k in table.keys_list])
    with torch.inference_mode():
        ref = model.embed(imgs) + model.embed(imgs.flip(-1))
    assert float((table.embeddings - ref).abs().max()) <= 1e-4 * max(1.0, float(ref.abs().max()))
    assert table.labels is not None
    assert len(set(table.labels.tolist())) == len({Path(k).parent for k in table.keys_list})


def test_extract_image_list_and_eval_features(mini, run_facerun, tmp_path):
    root, model, weights = mini
    files = sorted((root / "images").rglob("*.jpg"))[:6]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{f} {i % 3}\n" for i, f in enumerate(files)))  # absolute paths
    out = tmp_path / "list.safetensors"
    run_facerun("extract", *BB, "--weights", str(weights), "--data", str(lst), "--out", str(out), "-q")
    assert load_features(out).embeddings.shape == (6, 16)
    # full set of features, then eval from features and from the backbone: same metrics
    feats = tmp_path / "all.safetensors"
    run_facerun("extract", *BB, "--weights", str(weights), "--data", str(root / "images"), "--out", str(feats), "-q")
    rep1, rep2 = tmp_path / "r1", tmp_path / "r2"
    p1 = run_facerun(
        "eval",
        "--features",
        str(feats),
        "--protocol",
        "pairs",
        "--data",
        str(root),
        "--out",
        str(rep1),
        "--param",
        "protocol.n_folds=4",
    )
    run_facerun(
        "eval",
        *BB,
        "--weights",
        str(weights),
        "--protocol",
        "pairs",
        "--data",
        str(root),
        "--out",
        str(rep2),
        "--param",
        "protocol.n_folds=4",
        "-q",
    )
    assert "pairs: accuracy=" in p1.stdout
    m1 = json.loads((rep1 / "metrics.json").read_text())["protocols"]["pairs"]["metrics"]
    m2 = json.loads((rep2 / "metrics.json").read_text())["protocols"]["pairs"]["metrics"]
    assert m1["n_pairs"] == 16 and m1["n_folds"] == 4
    for k in ("accuracy", "auc", "eer"):
        assert m1[k] == pytest.approx(m2[k], abs=1e-6)
    assert (rep1 / "summary.md").read_text().startswith("# Evaluation report")
    folds = (rep1 / "pairs_folds.csv").read_text().splitlines()
    assert folds[0] == "fold,accuracy,threshold" and len(folds) == 5
    assert (rep1 / "pairs_roc.csv").is_file()
    try:
        import matplotlib  # noqa: F401

        assert (rep1 / "pairs_roc.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        assert "matplotlib is not installed" in p1.stderr


def _one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    for f in fragments:
        assert f in err[0], err[0]


def test_eval_bad_input_errors(mini, run_facerun, tmp_path):
    root, model, weights = mini
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    text = (bad / "pairs.txt").read_text().splitlines()
    text[4] = "Someone 1"
    (bad / "pairs.txt").write_text("\n".join(text) + "\n")
    _one_line_error(
        run_facerun("eval", *BB, "-p", "pairs", "--data", str(bad), check=False), "pairs.txt:5", "cannot parse"
    )
    (bad / "pairs.txt").write_text((root / "pairs.txt").read_text())
    gone = sorted((bad / "images").rglob("*.jpg"))[0]
    gone.unlink()
    _one_line_error(
        run_facerun("eval", *BB, "-p", "pairs", "--data", str(bad), "-q", check=False),
        "missing",
        gone.name,
        "--skip-missing",
    )
    ok = run_facerun(
        "eval",
        *BB,
        "-p",
        "pairs",
        "--data",
        str(bad),
        "--skip-missing",
        "--json",
        "-q",
        "--param",
        "protocol.n_folds=2",
    )
    m = json.loads(ok.stdout)
    assert m["n_skipped"] >= 1 and m["n_pairs"] == 16 - m["n_skipped"]
    _one_line_error(
        run_facerun("eval", *BB, "--features", "x.safetensors", "-p", "pairs", "--data", str(root), check=False),
        "exactly one of --backbone or --features",
    )
    _one_line_error(
        run_facerun("eval", *BB, "-p", "pairs", "--data", str(tmp_path / "nope"), check=False), "--data: not found"
    )


def test_eval_refuses_nan_features(mini, run_facerun, tmp_path):
    root, model, weights = mini
    keys = [str(f.relative_to(root / "images")) for f in sorted((root / "images").rglob("*.jpg"))]
    emb = torch.randn(len(keys), 8)
    emb[:3] = float("nan")
    save_features(tmp_path / "nan.safetensors", keys, emb)
    proc = run_facerun(
        "eval", "--features", str(tmp_path / "nan.safetensors"), "-p", "pairs", "--data", str(root), check=False
    )
    _one_line_error(proc, "NaN")


def test_extract_bad_data(run_facerun, tmp_path):
    _one_line_error(
        run_facerun(
            "extract", *BB, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "f.safetensors"), check=False
        ),
        "--data: not found",
    )


def test_extract_lmdb(mini, run_facerun, tmp_path):
    from facerec.data.formats import ImageFolder, LMDBDataset
    from facerec.data.writers import write_dataset

    root, model, weights = mini
    write_dataset(ImageFolder(root / "images"), tmp_path / "faces.lmdb", "lmdb")
    out = tmp_path / "lmdb.safetensors"
    run_facerun(
        "extract",
        *BB,
        "--weights",
        str(weights),
        "--data",
        str(tmp_path / "faces.lmdb"),
        "--out",
        str(out),
        "-q",
        "--batch-size",
        "7",
    )
    table = load_features(out)
    ds = LMDBDataset(tmp_path / "faces.lmdb", image_size=32)
    assert len(table) == len(ds) and table.labels.tolist() == ds.labels.tolist()
    imgs = ds.batch(range(len(ds)))["image"]
    with torch.inference_mode():
        ref = model.embed(imgs)
    assert float((table.embeddings - ref).abs().max()) <= 1e-4 * max(1.0, float(ref.abs().max()))


def test_extract_with_low_precision_records_it_and_refuses_it_with_no_optimize(tmp_path, run_facerun):
    from facerec.data.writers import write_dataset

    data = tmp_path / "faces"
    write_dataset(facerec.create("dataset", "synthetic", num_ids=2, per_id=3, image_size=32), data, "folder")
    out = tmp_path / "f.safetensors"
    run_facerun(
        "extract",
        "--backbone",
        "small-cnn",
        "--param",
        "backbone.image_size=32",
        "--data",
        str(data),
        "--out",
        str(out),
        "--precision",
        "bf16",
        "--quiet",
    )
    table = load_features(out)
    assert table.meta["precision"] == "bf16" and table.embeddings.shape == (6, 128)
    bad = run_facerun(
        "extract",
        "--backbone",
        "small-cnn",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "g.safetensors"),
        "--no-optimize",
        "--compile",
        check=False,
    )
    assert bad.returncode != 0 and "--no-optimize" in bad.stderr and "Traceback" not in bad.stderr
