"""The README's quickstart 4 (train ArcFace-IResNet on a folder, then on the same faces as an LMDB, then
evaluate the trained backbone), run as a user runs it: the README's own commands, facerun as a subprocess,
on a few AT&T photos with two optimizer steps and a strided subset of the shared LFW pairs."""

from __future__ import annotations

import json
import shutil

SECTION = "Train ArcFace-IResNet"
PAIRS = "40"


def test_quickstart_train_folder_and_lmdb(shared_data, readme, tmp_path):
    for person in ("s1", "s2", "s3", "s4"):  # faces/<person>/*.pgm, 3 each
        (tmp_path / "faces" / person).mkdir(parents=True)
        for name in ("1.pgm", "4.pgm", "7.pgm"):
            shutil.copy(shared_data / "att_faces" / person / name, tmp_path / "faces" / person / name)
    commands = readme.shell(readme.root, SECTION)
    assert [c.split()[1] for c in commands] == ["train", "data", "train", "eval"], commands
    assert all("--backbone iresnet50" in c for c in commands if c.split()[1] in ("train", "eval"))
    small = ["--param", f"protocol.max_pairs={PAIRS}"]
    done = readme.run(
        commands,
        {"../shared/data/lfw": str(shared_data / "lfw")},
        cwd=tmp_path,
        extra={"facerun train": ["--steps", "2", "--batch-size", "8", *small], "facerun eval": [*small, "-q"]},
    )
    for run, source in (("r50-folder", "image-folder"), ("r50-lmdb", "lmdb")):
        config = json.loads((tmp_path / run / "config.json").read_text())
        assert (config["backbone"], config["head"], config["dataset"]) == ("iresnet50", "arcface", source)
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["pairs/n_pairs"] == int(PAIRS) and metrics["step"] == 2 and metrics["finished"], metrics
        assert (tmp_path / run / "backbone.safetensors").is_file()
    assert "12" in done[commands[1]].stdout  # the LMDB holds the 12 photos
    evaluated = done[commands[3]]
    assert " over 10 folds" in evaluated.stdout and "RANDOM" not in evaluated.stderr, evaluated.stderr
