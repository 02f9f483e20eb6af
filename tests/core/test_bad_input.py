"""Hostile and careless input (issue 23): one test per finding, facerun run as a subprocess wherever the
finding is a command. Every refusal is one line on stderr, a non-zero exit, no traceback, and names
what was wrong; nothing the user had is lost. (Items 12 and 13, which need installed plugins, are in
test_registry.py; focused metric checks are in test_metrics.py.)"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import facerec
from facerec import metrics
from facerec.metrics import MetricInputError
from facerec.data.formats import ImageList
from facerec.data.writers import write_dataset
from facerec.errors import DataError, ParameterError, WeightsError
from facerec.recipes import run_pipeline
from facerec.weights import read_checkpoint, save_weights

FACERUN = str(Path(sys.executable).with_name("facerun"))
#: the smallest real training run: 4 identities x 2 images at 32 px, a 4-wide CNN, tiny evaluation
TINY = (
    "--backbone",
    "small-cnn",
    "--param",
    "train.batch_size=4",
    "--param",
    "backbone.width=4",
    "--param",
    "dataset.num_ids=4",
    "--param",
    "dataset.per_id=2",
    "--param",
    "protocol.pairs_per_fold=4",
    "--param",
    "protocol.num_folds=2",
)


def _run(
    *args: str, prefix: tuple[str, ...] = (), env: dict | None = None, timeout: int = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    return subprocess.run(
        [*prefix, FACERUN, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )


def _refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A one-line refusal naming every needle; returns the line."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    """One real, finished tiny training run (tests copy it before changing anything)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    _ok(_run("train", *TINY, "--steps", "2", "--out", str(run)))
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# ------------------------------------------------------------------------------ 1. never overwrite a run


def test_1_train_never_replaces_an_existing_run_or_a_users_folder(a_run, tmp_path):
    run = _copy(a_run, tmp_path / "run")
    before = _tree(run)
    line = _refused(
        _run("train", *TINY, "--steps", "1", "--out", str(run)),
        "already holds a run",
        "--resume",
        "--overwrite",
        str(run),
    )
    assert _tree(run) == before, line
    # the pipeline command (no --resume there) refuses too and says how to replace
    _refused(_run(*TINY, "--out", str(run)), "already holds a run", "--overwrite")
    assert _tree(run) == before
    # a folder of the user's own files is never written to, not even with --overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    _refused(_run("train", *TINY, "--steps", "1", "--out", str(mine), "--overwrite"), "holds no facerec run")
    assert (mine / "config.json").read_text() == '{"my": "settings"}' and len(list(mine.iterdir())) == 1
    # --overwrite replaces the earlier run: a fresh 1-step run, nothing of the 2-step one left
    _ok(_run("train", *TINY, "--steps", "1", "--out", str(run), "--overwrite"))
    assert json.loads((run / "metrics.json").read_text())["step"] == 1


# ------------------------------------------------------------------ 2. extract / export keep others' files


def test_2_extract_and_export_replace_only_what_they_may(tmp_path):
    feats = tmp_path / "feats.safetensors"
    feats.write_bytes(b"the user's earlier features")
    images = tmp_path / "images"
    for ident in range(2):
        (images / f"id{ident}").mkdir(parents=True)
        for k in range(2):
            from PIL import Image

            pixels = np.full((16, 16, 3), 40 * ident + 10 * k, np.uint8)
            Image.fromarray(pixels).save(images / f"id{ident}" / f"{k}.png")
    proc = _run("extract", "--backbone", "small-cnn", "--data", str(images), "--out", str(feats))
    _refused(proc, str(feats), "already exists", "--overwrite")
    assert "items/s" not in proc.stderr and feats.read_bytes() == b"the user's earlier features"  # nothing embedded
    # export --overwrite into a folder of unrelated files: refused, every file kept
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"not facerec's")
    export = (
        "data",
        "export",
        "synthetic",
        "--format",
        "folder",
        "--param",
        "num_ids=2",
        "--param",
        "per_id=2",
        "--param",
        "image_size=16",
        "-q",
    )
    _refused(_run(*export, "--out", str(other), "--overwrite"), str(other), "not written by facerec")
    assert _tree(other) == {"holiday.jpg": b"not facerec's"}
    # its own earlier output (it carries the marker) is replaced
    out = tmp_path / "faces"
    write_dataset(facerec.create("dataset", "synthetic", num_ids=1, per_id=2, image_size=16), out, "folder")
    assert (out / ".facerec-dataset.json").is_file() and len(list(out.rglob("*.jpg"))) == 2
    _ok(_run(*export, "--out", str(out), "--overwrite"))
    assert len(list(out.rglob("*.jpg"))) == 4


# ------------------------------------------------ 3. stale temporaries cleaned; SIGTERM writes a checkpoint


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has it now (the kernel reuses pids only after wrapping)


def test_3_stale_temporaries_are_cleaned_and_sigterm_saves_a_checkpoint(a_run, tmp_path):
    from facerec.engine.checkpoint import read_metadata

    run = _copy(a_run, tmp_path / "run")
    stale = run / "checkpoints" / f".train-last.safetensors.tmp{_dead_pid()}"
    stale.write_bytes(b"\0" * 1024)  # what a checkpoint write killed mid-way leaves
    mine = run / "checkpoints" / f".train-last.safetensors.tmp{os.getpid()}"  # a live writer's: kept
    mine.write_bytes(b"\0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [FACERUN, "train", *TINY, "--steps", "100000", "--log-every", "1", "--out", str(run), "--resume"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    log = run / "log.jsonl"
    start_lines = len(log.read_text().splitlines())
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(log.read_text().splitlines()) < start_lines + 2:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    assert not stale.exists() and mine.exists()  # cleaned at the start of training
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "SIGTERM" in line and "--resume" in line
    step = int(read_metadata(run / "checkpoints" / "train-last.safetensors")["step"])
    assert 2 < step < 100000  # the last checkpoint is the one the signal wrote, past the earlier run's
    # and the run continues from it
    _ok(_run("train", *TINY, "--steps", str(step + 1), "--out", str(run), "--resume"))
    assert json.loads((run / "metrics.json").read_text())["step"] == step + 1


# ------------------------------------------------------------------------------------- 4. list labels


BAD_LABELS = ("nan", "inf", "1e400", "99999999999999999999")


@pytest.mark.parametrize("label", BAD_LABELS)
def test_4_bad_list_labels_name_file_and_line(tmp_path, label):
    lst = tmp_path / "list.txt"
    lst.write_text(f"a.jpg 0\n# a comment\nb.jpg {label}\n")
    with pytest.raises(DataError, match=f"{lst} line 3: label '{label}' is"):
        ImageList(lst)


def test_4_bad_list_label_through_facerun(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"a.jpg 0\n# a comment\nb.jpg {BAD_LABELS[-1]}\n")
    _refused(_run("data", "info", str(lst)), f"{lst} line 3", repr(BAD_LABELS[-1]))


# --------------------------------------------------------------- 5. parameter values: types and ranges


BAD_PARAMS = {
    "backbone.width=-3": "must be in [1, 1024], got -3",
    "backbone.width=100000000000": "must be in [1, 1024], got 100000000000",
    "backbone.width=abc": "must be an integer, got 'abc'",
    "dataset.num_ids=1e30": "must be an integer, got 1e+30",
    "train.lr=1e308": "must be in [0, 100], got 1e+308",
    "train.lr=nan": "must be a finite number, got nan",
}


@pytest.mark.parametrize(("param", "why"), BAD_PARAMS.items(), ids=BAD_PARAMS)
def test_5_parameter_values_are_checked_before_any_work(tmp_path, param, why):
    out = tmp_path / "run"
    # the check every command shares, in-process
    with pytest.raises(ParameterError, match=rf"{param.split('=')[0]}.* {re.escape(why)}"):
        run_pipeline(backbone="small-cnn", out=str(out), params=(param,), echo=None)
    assert not out.exists()


def test_5_parameter_values_are_checked_through_facerun(tmp_path):
    out = tmp_path / "run"
    # --param and the --lr flag
    _refused(
        _run("train", *TINY, "--steps", "1", "--out", str(out), "--param", "backbone.width=abc"),
        "backbone.width",
        "must be an integer",
    )
    _refused(_run("train", *TINY, "--steps", "1", "--out", str(out), "--lr", "nan"), "train.lr", "finite")
    assert not out.exists()  # refused before the run directory was made


# ---------------------------------------------------------------------------- 6. read-only outputs


@pytest.fixture
def shared_dir():
    """A folder other users can read (pytest's own tmp is private to its user), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="facerec-ro-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path)


def _unprivileged() -> tuple[str, ...]:
    """Root writes into read-only folders anyway: run facerun as nobody where we are root."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder is writable to root")
    return (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")


READ_ONLY_CASES = ("train", "export", "extract", "weights convert")


@pytest.mark.parametrize("what", READ_ONLY_CASES)
def test_6_read_only_outputs_are_refused_before_any_work(shared_dir, what):
    prefix = _unprivileged()
    home = shared_dir / "home"
    home.mkdir()
    home.chmod(0o777)
    images = shared_dir / "images" / "id0"
    images.mkdir(parents=True)
    from PIL import Image

    for k in range(3):
        Image.fromarray(np.full((16, 16, 3), 50 * k, np.uint8)).save(images / f"{k}.png")
    original = shared_dir / "orig.pth"
    torch.save(facerec.create("backbone", "small-cnn", width=4).state_dict(), original)
    for p in shared_dir.rglob("*"):
        p.chmod(p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0))
    ro = shared_dir / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    env = {"HOME": str(home)}
    commands = {
        "train": ("train", *TINY, "--steps", "1", "--out", str(ro / "run")),
        "export": ("data", "export", "synthetic", "--format", "folder", "--out", str(ro / "faces"), "-q"),
        "extract": (
            "extract",
            "--backbone",
            "small-cnn",
            "--param",
            "backbone.width=4",
            "--data",
            str(shared_dir / "images"),
            "--out",
            str(ro / "f.safetensors"),
        ),
        "weights convert": (
            "weights",
            "convert",
            str(original),
            "--arch",
            "small-cnn",
            "--param",
            "width=4",
            "--to",
            str(ro / "o.safetensors"),
        ),
    }
    assert set(commands) == set(READ_ONLY_CASES)
    proc = _run(*commands[what], prefix=prefix, env=env, cwd=home)
    line = _refused(proc, str(ro), "not writable")
    assert "items/s" not in proc.stderr  # extract: refused before embedding anything
    assert not list(ro.iterdir()), line


# --------------------------------------------------------------------- 7. an output under a regular file


def test_7_an_output_under_a_regular_file_is_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    original = tmp_path / "orig.pth"
    torch.save(facerec.create("backbone", "small-cnn", width=4).state_dict(), original)
    _refused(
        _run(
            "weights",
            "convert",
            str(original),
            "--arch",
            "small-cnn",
            "--param",
            "width=4",
            "--to",
            str(afile / "o.safetensors"),
        ),
        str(afile),
        "regular file",
    )
    _refused(
        _run("data", "export", "synthetic", "--format", "folder", "--out", str(afile / "x"), "-q"),
        str(afile),
        "regular file",
    )
    with pytest.raises(DataError, match="afile is a regular file"):
        run_pipeline(backbone="small-cnn", out=str(afile / "run"), echo=None)
    assert afile.read_text() == "a file, not a folder"


# ------------------------------------------------------------------------------- 8. the safe loader


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_8_malicious_files_are_refused_by_the_safe_loader_in_one_line(tmp_path):
    marker = tmp_path / "PWNED"
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    _refused(
        _run("weights", "convert", str(legacy), "--arch", "small-cnn", "--to", str(tmp_path / "o.safetensors")),
        str(legacy),
        "refused by the safe loader",
        "system",
    )
    bare = tmp_path / "bare.pth"
    bare.write_bytes(pickle.dumps({"w": _Evil(marker)}, protocol=4))
    with pytest.raises(
        WeightsError, match=r"bare.pth: refused by the safe loader: it references (posix|os|nt)\.system"
    ):
        read_checkpoint(bare)
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


# ------------------------------------------------------------------- 9. search never ranks NaN first


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("normalise", [True, False])
def test_9_search_refuses_non_finite_gallery_rows_with_count_and_indices(precision, normalise):
    gen = torch.Generator().manual_seed(0)
    gallery, probes = torch.randn(40, 16, generator=gen), torch.randn(5, 16, generator=gen)
    gallery[7, 3] = float("nan")
    gallery[21] = float("inf")
    with pytest.raises(MetricInputError, match=r"2 gallery feature\(s\) contain NaN or inf.*rows 7, 21"):
        metrics.search(gallery, probes, k=3, precision=precision, normalise=normalise)


# --------------------------------------------------------------------- 10. every metric checks its inputs


#: name -> (the refusal, a call on a 50 x 8 gallery and 6 x 8 probes)
MISMATCHES = {
    "rank_k-10-gallery-labels": (
        r"10,.*50 gallery rows",
        lambda g, p: metrics.rank_k(g, torch.arange(10), p, torch.arange(6)),
    ),
    "rank_k-60-gallery-labels": (
        r"60,.*50 gallery rows",
        lambda g, p: metrics.rank_k(g, torch.arange(60), p, torch.arange(6)),
    ),
    "cmc-probe-labels": (
        r"\(3,\) labels for 6 probe rows",
        lambda g, p: metrics.cmc(g, torch.arange(50), p, torch.arange(3)),
    ),
    "empty-scores": ("empty", lambda g, p: metrics.best_threshold_accuracy([], [])),
    "search-k": ("k must be an integer >= 1", lambda g, p: metrics.search(g, p, k=-1)),
    "search-dims": ("8-d .* 7-d", lambda g, p: metrics.search(g, p[:, :7])),
    "rank_k-dims": ("8-d .* 7-d", lambda g, p: metrics.rank_k(g, torch.arange(50), p[:, :7], torch.arange(6))),
    "nan-far": ("fars must lie in", lambda g, p: metrics.tar_at_far([0.1, 0.9, 0.4], [0, 1, 1], fars=[float("nan")])),
}


@pytest.mark.parametrize(("message", "call"), MISMATCHES.values(), ids=MISMATCHES)
def test_10_metrics_refuse_inputs_that_do_not_agree(message, call):
    gen = torch.Generator().manual_seed(1)
    gallery, probes = torch.randn(50, 8, generator=gen), torch.randn(6, 8, generator=gen)
    with pytest.raises(MetricInputError, match=message):
        call(gallery, probes)


# ------------------------------------------------------------------------------------- 11. --steps


def test_11_huge_steps_are_refused(tmp_path):
    out = tmp_path / "run"
    _refused(_run("train", *TINY, "--steps", "99999999999999999999999", "--out", str(out)), "train.steps")
    assert not out.exists()


# ------------------------------------------------------------------------------------- 14. messages


def _card_plugin(root: Path) -> None:
    """A real installed distribution (dist-info + entry point) registering one card for small-cnn."""
    (root / "onecard").mkdir(parents=True)
    (root / "onecard" / "__init__.py").write_text(
        textwrap.dedent("""
        from facerec.weights import WeightCard, WeightFile
        FACEREC_API = 1
        CARD = WeightCard(name="one-card", arch="small-cnn", files=[WeightFile("w.safetensors", url="file:///x")])
    """)
    )
    info = root / "onecard-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onecard\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[facerec.weights]\none-card = onecard:CARD\n")


def test_14_messages_name_the_actual_problem(tmp_path):
    site = tmp_path / "site"
    _card_plugin(site)
    _refused(
        _run("weights", "list", "--arch", "nonexistent", env={"PYTHONPATH": str(site)}),
        "'nonexistent' matches no weight card",
        "archs with cards",
        "small-cnn",
    )
    # a .safetensors file given as an LMDB mask is named as one
    lmdb = tmp_path / "faces.lmdb"
    write_dataset(facerec.create("dataset", "synthetic", num_ids=2, per_id=1, image_size=16), lmdb, "lmdb")
    mask = save_weights({"x": torch.zeros(2)}, tmp_path / "mask.safetensors")
    _refused(_run("data", "info", str(lmdb), "--mask", str(mask)), str(mask), "is a safetensors file")
    # a truncated insightface .bin is named as truncated
    data = pickle.dumps(([b"\xff\xd8" * 40] * 4, [True, False]), protocol=4)
    cut = tmp_path / "lfw.bin"
    cut.write_bytes(data[: len(data) // 2])
    _refused(_run("eval", "--backbone", "small-cnn", "--protocol", "pairs", "--data", str(cut)), str(cut), "truncated")
