"""`facerun data align` as a user runs it: a raw photo folder made here from real faces (pasted on
larger canvases, EXIF-rotated, 16-bit, CMYK, palette, two faces in one photo, a photo without a
face, a corrupt file) -> LMDB and folder outputs, the failure list, resume after a kill, bad input.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.errors import DataError
from facerec.data.detect.released import installed_folder

pytestmark = pytest.mark.skipif(
    installed_folder() is None,
    reason="MTCNN weights absent: pip install --no-deps facenet-pytorch==2.6.0 (the core nox session does)",
)

EXPECTED_FAILURES = {"bob/b4_noface.png": "no face found", "bob/b5_corrupt.jpg": "cannot decode"}


def _face(shared: Path, name: str) -> Image.Image:
    return Image.open(shared / "yalefaces" / name).convert("L")


def _canvas(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = (90 + 40 * np.sin(x / 37.0) + 30 * np.cos(y / 23.0) + rng.normal(0, 6, x.shape)).clip(0, 255)
    return Image.fromarray(np.stack([base, base * 0.9, base * 0.8], -1).astype(np.uint8))


def _pasted(face: Image.Image, size: tuple[int, int], at: tuple[int, int], seed: int) -> Image.Image:
    canvas = _canvas(size, seed)
    canvas.paste(face.convert("RGB"), at)
    return canvas


def make_raw(root: Path, shared: Path) -> Path:
    """Three identities, ten photos, two of which must end up in the failure list."""
    raw = root / "raw"
    for d in ("alice", "bob", "carol"):
        (raw / d).mkdir(parents=True)
    _pasted(_face(shared, "subject01.happy"), (480, 360), (100, 60), 1).save(raw / "alice/a1.jpg", quality=92)
    _pasted(_face(shared, "subject01.sad"), (500, 380), (30, 120), 2).save(raw / "alice/a2.png")
    upright = _pasted(_face(shared, "subject01.normal"), (460, 340), (70, 40), 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": store the photo turned the other way
    upright.transpose(Image.Transpose.ROTATE_90).save(raw / "alice/a3_rotated.jpg", quality=92, exif=exif)
    att = Image.open(shared / "att_faces/s1/1.pgm").resize((276, 336), Image.Resampling.BICUBIC)
    _pasted(att, (420, 420), (60, 40), 4).save(raw / "bob/b1.png")
    deep = np.asarray(_pasted(_face(shared, "subject02.normal"), (400, 300), (40, 30), 5).convert("L"))
    Image.fromarray(deep.astype(np.uint16) * 257).save(raw / "bob/b2_16bit.png")
    _pasted(_face(shared, "subject02.happy"), (400, 300), (60, 20), 6).convert("CMYK").save(raw / "bob/b3_cmyk.jpg")
    _canvas((300, 240), 7).save(raw / "bob/b4_noface.png")
    (raw / "bob/b5_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    _pasted(_face(shared, "subject02.sad"), (400, 300), (50, 20), 8).convert("P").save(raw / "bob/b6.gif")
    two = _pasted(_face(shared, "subject03.normal"), (700, 320), (20, 40), 9)
    two.paste(_face(shared, "subject04.normal").convert("RGB"), (360, 60))
    two.save(raw / "carol/c1_two.jpg", quality=92)
    return raw


@pytest.fixture(scope="module")
def raw(tmp_path_factory, shared_data) -> Path:
    return make_raw(tmp_path_factory.mktemp("photos"), shared_data)


def _failures(path: Path, raw: Path) -> dict[str, str]:
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["path", "reason"]
    return {os.path.relpath(r[0], raw): r[1] for r in rows[1:]}


def _check_failures(path: Path, raw: Path) -> None:
    got = _failures(path, raw)
    assert set(got) == set(EXPECTED_FAILURES)
    for rel, words in EXPECTED_FAILURES.items():
        assert words in got[rel]


def test_align_to_lmdb(tmp_path, raw, run_facerun):
    from facerec.data.detect import MTCNN
    from facerec.data.formats import LMDBDataset
    from facerec.data.raw_faces import read_template

    out = tmp_path / "chips.lmdb"
    proc = run_facerun("data", "align", str(raw), "--out", str(out), "--template", "arcface112", "--batch-size", "4")
    assert "aligned 8 faces of 3 identities from 8 of 10 images" in proc.stdout
    assert "2 images without a face or unreadable" in proc.stdout and "chips.lmdb.failures.csv" in proc.stdout
    assert "aligning: 10/10" in proc.stderr  # the progress line
    _check_failures(tmp_path / "chips.lmdb.failures.csv", raw)
    ds = LMDBDataset(out)
    assert len(ds) == 8 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2]
    assert read_template(out) == "arcface112"
    # every chip holds an upright face on the template (the EXIF-rotated photo, record 2, included)
    from facerec.data.align import ARCFACE_112

    chips = ds.batch(range(8))["image"]
    assert tuple(chips.shape) == (8, 3, 112, 112)
    found = MTCNN().detect(chips)
    for k, f in enumerate(found):
        assert len(f) >= 1, k
        err = np.abs(f.largest().landmarks[0].numpy() - ARCFACE_112).max()
        assert err < 8, (k, err)
    # and the rotated photo's chip is the chip of the same photo stored upright
    upright_dir = tmp_path / "upright" / "x"
    upright_dir.mkdir(parents=True)
    img = Image.open(raw / "alice/a3_rotated.jpg")
    Image.fromarray(np.asarray(img.transpose(Image.Transpose.ROTATE_270))).save(upright_dir / "a3.png")
    run_facerun(
        "data", "align", str(upright_dir.parent), "--out", str(tmp_path / "up.lmdb"), "--template", "arcface112", "-q"
    )
    up = LMDBDataset(tmp_path / "up.lmdb")[0]["image"]
    assert float((up - chips[2]).abs().mean()) < 0.02
    assert float((up - chips[0]).abs().mean()) > 0.04  # another photo of the same person differs more


def test_align_all_faces_to_a_folder(tmp_path, raw, run_facerun):
    from facerec.data.formats import ImageFolder
    from facerec.data.raw_faces import read_template

    out = tmp_path / "chips"
    proc = run_facerun("data", "align", str(raw), "--out", str(out), "--template", "lightcnn144", "--all", "-q")
    assert "aligned 9 faces of 3 identities from 8 of 10 images" in proc.stdout
    assert proc.stderr == ""  # --quiet
    meta = json.loads((out / "facerec-align.json").read_text())
    assert meta["template"] == "lightcnn144" and meta["identities"] == ["alice", "bob", "carol"]
    assert read_template(out) == "lightcnn144"
    ds = ImageFolder(out)
    assert len(ds) == 9 and np.bincount(ds.labels.numpy()).tolist() == [3, 4, 2]  # carol's photo has two
    assert ds.template == "lightcnn144"  # the folder declares it, so extract/eval warp instead of resizing
    (out / "facerec-align.json").write_text("{}")
    with pytest.raises(DataError, match="facerec-align.json: unreadable alignment record"):
        ImageFolder(out)
    assert tuple(ds[0]["image"].shape) == (3, 144, 144)
    _check_failures(tmp_path / "chips.failures.csv", raw)


def _poll_done(journal: Path) -> int:
    try:
        return int(json.loads(journal.read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_resume_after_kill(tmp_path, raw, run_facerun):
    fresh = tmp_path / "fresh"  # same batches as the killed run: batched conv sums may round differently
    run_facerun("data", "align", str(raw), "--out", str(fresh), "--template", "dcr120", "--batch-size", "1", "-q")
    out = tmp_path / "killed"
    args = ["data", "align", str(raw), "--out", str(out), "--template", "dcr120", "--batch-size", "1", "-q"]
    exe = Path(sys.executable).with_name("facerun")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = tmp_path / "killed.partial" / ".facerec-progress.json"
    deadline = time.time() + 300
    while _poll_done(journal) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (tmp_path / "killed.partial").is_dir()
    again = run_facerun(*args)
    resumed = int(again.stdout.split("resumed at image ")[1].split(")")[0])
    assert 2 <= resumed < 10
    files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for f in files:
        if f != "facerec-align.json":
            assert (fresh / f).read_bytes() == (out / f).read_bytes(), f
    assert (tmp_path / "killed.failures.csv").read_text() == (tmp_path / "fresh.failures.csv").read_text()


#: name -> (`facerun data align` arguments after the input folder, the input: "raw" photos, a "flat" folder
#: or a "missing" one, what the one-line error says). OUT is the output folder, which must not appear.
BAD_ALIGN = {
    "template": (("--out", "OUT", "--template", "nope"), "raw", "unknown alignment template 'nope'"),
    "missing-input": (("--out", "OUT", "--template", "arcface112"), "missing", "not a folder"),
    "output-exists": (("--out", "TAKEN", "--template", "arcface112"), "raw", "already exists"),
    "flat-input": (("--out", "OUT", "--template", "arcface112"), "flat", "no identity sub-folders"),
    "detector": (("--out", "OUT", "--template", "arcface112", "--detector", "nope"), "raw", "no detector named 'nope'"),
    "detector-weights": (
        ("--out", "OUT", "--template", "arcface112", "--detector-weights", "GONE"),
        "raw",
        "neither a file nor a registered card",
    ),
    "detector-param": (
        ("--out", "OUT", "--template", "arcface112", "--detector-param", "thresholds=[0.6]"),
        "raw",
        "thresholds must be three numbers",
    ),
    "device": (
        ("--out", "OUT", "--template", "arcface112", "--device", "bogus"),
        "raw",
        "--device 'bogus' is not a device",
    ),
}


@pytest.mark.parametrize(("args", "source", "words"), BAD_ALIGN.values(), ids=BAD_ALIGN)
def test_bad_input_is_one_line(tmp_path, raw, run_facerun, args, source, words):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(flat / "x.png")
    (tmp_path / "taken").mkdir()
    inputs = {"raw": raw, "flat": flat, "missing": tmp_path / "missing"}
    paths = {"OUT": tmp_path / "out", "TAKEN": tmp_path / "taken", "GONE": tmp_path / "gone.whl"}
    proc = run_facerun("data", "align", str(inputs[source]), *(str(paths.get(a, a)) for a in args), check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_flat_folder_to_lmdb_is_unlabelled(tmp_path, raw, run_facerun):
    from facerec.data.formats import LMDBDataset

    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a1.jpg", "a2.png"):
        (flat / name).write_bytes((raw / "alice" / name).read_bytes())
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (120, 130, 140)).save(buf, format="PNG")
    (flat / "z_blank.png").write_bytes(buf.getvalue())
    proc = run_facerun("data", "align", str(flat), "--out", str(tmp_path / "flat.lmdb"), "--template", "vggface2", "-q")
    assert "aligned 2 faces (unlabelled) from 2 of 3 images" in proc.stdout
    ds = LMDBDataset(tmp_path / "flat.lmdb")
    assert ds.labels.tolist() == [-1, -1] and tuple(ds[0]["image"].shape) == (3, 256, 256)
    assert _failures(tmp_path / "flat.lmdb.failures.csv", flat) == {"z_blank.png": "no face found"}
    # nothing but faceless photos: an error, the failure list, and no half-written output left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.png").write_bytes(buf.getvalue())
    proc = run_facerun(
        "data", "align", str(empty), "--out", str(tmp_path / "none.lmdb"), "--template", "arcface112", check=False
    )
    assert proc.returncode != 0 and "no face found in any of the 1 images" in proc.stderr
    assert _failures(tmp_path / "none.lmdb.failures.csv", empty) == {"blank.png": "no face found"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("none")) == ["none.lmdb.failures.csv"]


def test_large_photos_close_a_chunk_early(tmp_path, raw, monkeypatch):
    from facerec.data import raw_faces
    from facerec.data.detect import MTCNN
    from facerec.data.formats import LMDBDataset

    monkeypatch.setattr(raw_faces, "CHUNK_PIXELS", 100_000)  # every photo here is larger: one per chunk
    calls = []
    result = raw_faces.align_photos(
        raw,
        tmp_path / "c.lmdb",
        "arcface112",
        MTCNN(),
        chunk=32,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result.faces == 8 and result.failed == 2 and len(LMDBDataset(tmp_path / "c.lmdb")) == 8
    assert len(calls) >= 8 and calls[-1] == (10, 10) and [d for d, _ in calls] == sorted({d for d, _ in calls})
