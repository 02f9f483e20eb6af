"""The README's quickstarts 1 and 2, run as a new user runs them (facerun as a subprocess, the README's own
commands read from README.md), on small real data: a strided subset of the shared LFW, and a few AT&T photos
as "your own photos". The full 6,000-pair LFW result is checked by test_lfw.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

LFW_SECTION = "A released model on real faces: LFW"
PHOTOS_SECTION = "Your own photos"


def test_quickstart_lfw(dlib_dat, lfw_dir, readme, run_facerun, tmp_path):
    commands = readme.shell(readme.root, LFW_SECTION)
    assert [c.split()[:2] for c in commands] == [["facerun", "eval"]], commands
    done = readme.run(
        commands,
        {"../shared/data/lfw": str(lfw_dir)},
        cwd=tmp_path,
        extra={"facerun eval": ["--param", "protocol.max_pairs=300", "-q"]},
    )
    proc = done[commands[0]]
    assert "warped to dlib150" in proc.stderr and " over 10 folds" in proc.stdout
    m = json.loads((tmp_path / "lfw-report" / "metrics.json").read_text())["protocols"]["pairs"]["metrics"]
    assert m["n_pairs"] == 300 and m["accuracy"] > 0.95, m


def test_quickstart_own_photos(dlib_dat, mtcnn_weights, shared_data, readme, tmp_path):
    for person in ("s1", "s2", "s3", "s4"):  # AT&T faces: photos/<person>/*.pgm, 3 each
        (tmp_path / "photos" / person).mkdir(parents=True)
        for name in ("1.pgm", "4.pgm", "7.pgm"):
            shutil.copy(shared_data / "att_faces" / person / name, tmp_path / "photos" / person / name)
    commands = readme.shell(readme.root, PHOTOS_SECTION)
    assert [c.split()[1] for c in commands] == ["data", "data", "extract"], commands
    done = readme.run(commands, {}, cwd=tmp_path)
    assert "aligned 12 faces of 4 identities" in done[commands[0]].stdout
    assert "warped to dlib150" in done[commands[2]].stderr  # the LMDB declared arcface112
    (code,) = readme.python(readme.root, PHOTOS_SECTION)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"same identity for ([\d.]+)% of (\d+) faces", proc.stdout)
    assert found and int(found.group(2)) == 12, proc.stdout
    assert float(found.group(1)) >= 90.0, proc.stdout


@pytest.mark.parametrize("section", [LFW_SECTION, PHOTOS_SECTION])
def test_quickstart_sections_only_hold_runnable_commands(readme, section):
    """Every shell line of the two sections is either a package install or a facerun command run above."""
    assert readme.shell(readme.root, section)
