"""facerun generate with vec2face through the real CLI: HSFace LMDB layout, shards, resume inputs, errors."""

from __future__ import annotations

import argparse

import lmdb
import msgpack
import numpy as np
import pytest
import torch

from facerec_vec2face.generator import Vec2Face


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    g = Vec2Face(config="tiny")
    # Original training-checkpoint container, argparse.Namespace included.
    torch.save(
        {"model_vec2face": g.state_dict(), "model_disc": {}, "epoch": 1, "args": argparse.Namespace(model="tiny")},
        root / "w.pth",
    )
    np.save(root / "centers.npy", (np.random.default_rng(0).standard_normal((8, 512)) * 1.4).astype(np.float32))
    return root


def _records(path):
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        n = msgpack.loads(txn.get(b"__len__"))
        classes = msgpack.loads(txn.get(b"__classnum__"))
        recs = [msgpack.loads(txn.get(str(i).encode())) for i in range(n)]
    env.close()
    return n, classes, recs


def _pixels(recs):
    import io

    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(r[0])).convert("RGB")) for r in recs])


def _gen(run_facerun, files, out, *extra, check=True):
    return run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(files / "w.pth"),
        "--ids",
        "6",
        "--per-id",
        "3",
        "--condition",
        f"fit_centers={files / 'centers.npy'}",
        "--ids-per-chunk",
        "2",
        "--out",
        str(out),
        *extra,
        cwd=files,
        check=check,
    )


def test_generate_hsface_lmdb_and_shards(run_facerun, files):
    proc = _gen(run_facerun, files, files / "all.lmdb")
    assert "images/s" in proc.stdout
    n, classes, recs = _records(files / "all.lmdb")
    assert n == 18 and classes == 6
    assert [r[1] for r in recs] == [i // 3 for i in range(18)]
    assert all(r[0][:3] == b"\xff\xd8\xff" for r in recs)  # JPEG bytes, HSFace (jpeg, label) records
    # Two shards reproduce the full run exactly, with global labels (in-process: same click command).
    from click.testing import CliRunner

    from facerec.cli import main

    for i in range(2):
        res = CliRunner().invoke(
            main,
            [
                "generate",
                "--generator",
                "vec2face",
                "--param",
                "config=tiny",
                "--weights",
                str(files / "w.pth"),
                "--ids",
                "6",
                "--per-id",
                "3",
                "--condition",
                f"fit_centers={files / 'centers.npy'}",
                "--ids-per-chunk",
                "2",
                "--out",
                str(files / f"s{i}.lmdb"),
                "--shard",
                f"{i}/2",
                "--quiet",
            ],
        )
        assert res.exit_code == 0, res.output
    parts = _records(files / "s0.lmdb")[2] + _records(files / "s1.lmdb")[2]
    assert [r[1] for r in parts] == [r[1] for r in recs]
    # Same images up to float rounding (thread splits differ with batch composition) and JPEG re-quantisation.
    diff = (_pixels(parts).astype(int) - _pixels(recs).astype(int)).__abs__()
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_generate_with_given_centers_uses_them(files):
    from click.testing import CliRunner

    from facerec.cli import main

    res = CliRunner().invoke(
        main,
        [
            "generate",
            "--generator",
            "vec2face",
            "--param",
            "config=tiny",
            "--weights",
            str(files / "w.pth"),
            "--ids",
            "2",
            "--per-id",
            "2",
            "--condition",
            f"centers={files / 'centers.npy'}",
            "--out",
            str(files / "c.lmdb"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    n, classes, _ = _records(files / "c.lmdb")
    assert (n, classes) == (4, 2)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (("--condition", "bogus=1"), "bogus"),
        (("--condition", "centers=missing.npy"), "missing.npy"),
        (("--shard", "3/2"), "--shard"),
        ((), "centers"),  # no identity source at all
    ],
)
def test_generate_bad_input_one_line(files, extra, needle):
    # In-process through the same click group (a subprocess per case would cost ~10 s each on 2 cores).
    from click.testing import CliRunner

    from facerec.cli import main

    res = CliRunner().invoke(
        main,
        [
            "generate",
            "--generator",
            "vec2face",
            "--param",
            "config=tiny",
            "--ids",
            "4",
            "--per-id",
            "2",
            "--out",
            str(files / "bad.lmdb"),
            *extra,
        ],
    )
    assert res.exit_code != 0
    assert needle in res.output and "Traceback" not in res.output
    # one error line; the only other line allowed is the warning that the generator has random weights
    lines = [
        ln for ln in res.output.strip().splitlines() if not ln.startswith("warning: facerun generate without --weights")
    ]
    assert len(lines) == 1, res.output
    assert not (files / "bad.lmdb").exists()


def test_generate_bad_input_subprocess(run_facerun, files):
    proc = run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--ids",
        "2",
        "--per-id",
        "2",
        "--condition",
        "bogus=1",
        "--out",
        str(files / "none.lmdb"),
        cwd=files,
        check=False,
    )
    assert proc.returncode != 0 and "bogus" in proc.stderr and "Traceback" not in proc.stderr
