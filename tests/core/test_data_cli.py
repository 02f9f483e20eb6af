"""`facerun data` as a user runs it: export, info, convert (interrupted and resumed), show, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import facerec
from facerec.data.formats import ImageFolder, ImageList, LMDBDataset, shared_reader


def _dump(path: Path) -> dict[bytes, bytes]:
    with shared_reader(path).begin() as txn:
        return dict(txn.cursor())


def test_export_info_convert_show(tmp_path, run_facerun):
    small = ["--param", "num_ids=3", "--param", "vis_per_id=1", "--param", "nir_per_id=2", "--param", "image_size=32"]
    run_facerun("data", "export", "synthetic-nir-vis", *small, "--format", "lmdb", "--out", str(tmp_path / "nv.lmdb"))
    info = json.loads(run_facerun("data", "info", str(tmp_path / "nv.lmdb"), "--json").stdout)
    assert info["format"] == "lmdb" and info["samples"] == 9 and info["identities"] == 3
    assert info["modality"] == {"VIS": 3, "NIR": 6} and info["image_size"] == [32, 32]

    conv = run_facerun("data", "convert", str(tmp_path / "nv.lmdb"), "--to", "list", "--out", str(tmp_path / "nv"))
    assert "wrote 9 images of 3 identities" in conv.stdout
    lst = ImageList(tmp_path / "nv" / "list.txt", modality_rule=2)
    ref = facerec.create("dataset", "synthetic-nir-vis", num_ids=3, vis_per_id=1, nir_per_id=2, image_size=32)
    want = ref.batch(range(9))
    assert lst.labels.tolist() == want["label"].tolist() and lst.modality.tolist() == want["modality"].tolist()
    assert (lst.batch(range(9))["image"] - want["image"]).abs().mean() < 0.03  # JPEG q95 of the renders
    assert lst.read_raw(4) == LMDBDataset(tmp_path / "nv.lmdb").read_raw(4)  # bytes copied, not re-encoded

    shown = run_facerun(
        "data", "show", str(tmp_path / "nv" / "list.txt"), "--out", str(tmp_path / "grid.png"), "--count", "6"
    )
    assert "wrote 6 samples" in shown.stdout
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.width > 6 * 32 // 2


def test_show_registered_dataset(tmp_path, run_facerun):
    run_facerun(
        "data",
        "show",
        "synthetic",
        "--param",
        "num_ids=4",
        "--param",
        "per_id=2",
        "--param",
        "image_size=48",
        "--out",
        str(tmp_path / "g.png"),
        "--count",
        "8",
        "--columns",
        "4",
    )
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.width >= 4 * 48 and im.height >= 2 * 48


def test_real_faces_folder_to_lmdb(shared_data, tmp_path, run_facerun):
    out = tmp_path / "att.lmdb"
    run_facerun("data", "convert", str(shared_data / "att_faces"), "--to", "lmdb", "--out", str(out), "-q")
    att, back = ImageFolder(shared_data / "att_faces"), LMDBDataset(out)
    assert back.labels.tolist() == att.labels.tolist() and back.num_classes == 40
    assert (back[123]["image"] - att[123]["image"]).abs().mean() < 0.01  # PGM -> JPEG q95


def test_interrupted_convert_resumes_to_the_same_result(tmp_path, run_facerun):
    """SIGKILL a real `facerun data export` mid-way, run it again: identical to an uninterrupted write."""
    params = {"num_ids": 60, "per_id": 10, "image_size": 112, "seed": 3}
    args = [
        "data",
        "export",
        "synthetic",
        *[x for k, v in params.items() for x in ("--param", f"{k}={v}")],
        "--format",
        "lmdb",
        "--out",
        str(tmp_path / "s.lmdb"),
        "--chunk",
        "16",
    ]
    exe = Path(sys.executable).with_name("facerun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows = tmp_path / "s.lmdb.partial.rows"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if rows.exists() and rows.stat().st_size > 0:  # at least one chunk underway/committed
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"export ended before it could be interrupted: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (tmp_path / "s.lmdb").exists() and (tmp_path / "s.lmdb.partial").exists()

    resumed = run_facerun(*args)
    assert "wrote 600 images of 60 identities" in resumed.stdout
    # the same command, uninterrupted (same process setup and chunks: the renderer is exact per
    # batch, not across batch compositions or thread counts, ~1e-3)
    straight = tmp_path / "straight.lmdb"
    run_facerun(*args[:-3], str(straight), "--chunk", "16")
    a, b = _dump(tmp_path / "s.lmdb"), _dump(straight)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"records differ after resume: {differ[:10]}"
    assert not (tmp_path / "s.lmdb.partial").exists() and not (tmp_path / "s.lmdb.partial.rows").exists()


#: name -> (the command's arguments in a fresh folder, what its one-line error says)
ONE_LINE_ERRORS = {
    "convert-missing": (
        lambda t: ("data", "convert", str(t / "nope"), "--to", "lmdb", "--out", str(t / "x")),
        "does not exist",
    ),
    "export-bad-param": (
        lambda t: ("data", "export", "synthetic", "--param", "num_ids", "--format", "list", "--out", str(t / "y")),
        "--param 'num_ids' is not key=value",
    ),
    "info-no-images": (lambda t: ("data", "info", str(t)), "no images found"),
}


@pytest.mark.parametrize(("args", "expected"), ONE_LINE_ERRORS.values(), ids=ONE_LINE_ERRORS)
def test_one_line_errors(tmp_path, run_facerun, args, expected):
    proc = run_facerun(*args(tmp_path), check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_params_are_parsed_as_values():
    from facerec.commands.data import parse_params

    assert parse_params(("a=3", "b=0.5", "c=true", "d=NIR,VIS", "e=[8, 12]", "f=")) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "NIR,VIS",
        "e": [8, 12],
        "f": "",
    }
