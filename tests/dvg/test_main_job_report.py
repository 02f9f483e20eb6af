"""The main job's report, as the README's run command leaves it: a headline on the console, summary.md with
a setup table that names what ran, and every picture summary.md names drawn, in an environment that holds
only what the README's install line gives (what requirements/test.txt adds on top is made unimportable)."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

# every stage of the quick preset, cut to a few steps (the sizes stay: 64 px generator, VIS control ...)
SMALL = [
    "--param",
    "recipe.pretrain_ids=12",
    "--param",
    "recipe.pretrain_per_id=2",
    "--param",
    "train.steps=2",
    "--param",
    "recipe.batch_size=8",
    "--param",
    "recipe.sampler_steps=3",
    "--param",
    "recipe.generator_steps=2",
    "--param",
    "recipe.generator_batch=4",
    "--param",
    "recipe.num_pairs=16",
    "--param",
    "dataset.num_ids=6",
    "--param",
    "protocol.num_ids=10",
    "--param",
    "protocol.nir_per_id=3",
    "--param",
    "recipe.write_generated=none",
]


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~;\[ ]", line)[0].lower())
    return names


def _test_only_modules() -> list[str]:
    """Top-level modules of the packages requirements/test.txt adds to the README's install."""
    readme_install = _requirement_names(ROOT / "requirements" / "base.txt")
    extra = _requirement_names(ROOT / "requirements" / "test.txt") - readme_install
    return sorted(
        mod
        for mod, dists in md.packages_distributions().items()
        if any(d.lower() in extra for d in dists) and not mod.startswith("_")
    )


def test_readme_install_has_matplotlib():
    assert "matplotlib" in _requirement_names(ROOT / "requirements" / "base.txt")
    assert any(r.startswith("matplotlib") and "extra" not in r for r in md.requires("facerec-core") or [])
    assert "requirements/base.txt ./core ./facerec_dvg" in (ROOT / "README.md").read_text()


def test_every_picture_the_summary_names_exists(run_facerun, tmp_path):
    blocked = _test_only_modules()
    assert "pytest" in blocked and "matplotlib" not in blocked
    site = tmp_path / "site"
    site.mkdir()
    # as if not installed: importlib.util.find_spec() says None (torch probes optional packages that way)
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "from importlib.machinery import PathFinder\n"
        f"BLOCKED = {blocked!r}\n"
        "class _WithoutTestPackages:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            return None\n"
        "        return PathFinder.find_spec(name, path, target)\n"
        "    def invalidate_caches(self):\n"
        "        PathFinder.invalidate_caches()\n"
        "    def find_distributions(self, *args, **kwargs):\n"
        "        return PathFinder.find_distributions(*args, **kwargs)\n"
        "sys.meta_path[:] = [_WithoutTestPackages() if f is PathFinder else f for f in sys.meta_path]\n"
    )
    env = {"PYTHONPATH": str(site)}
    probe = run_facerun("--help", env=env)  # the blocker is active in facerun's own interpreter
    assert probe.returncode == 0
    import subprocess

    check = subprocess.run([sys.executable, "-c", "import pytest"], env={"PYTHONPATH": str(site)}, capture_output=True)
    assert check.returncode != 0

    out = tmp_path / "run"
    proc = run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--out", str(out), *SMALL, env=env)
    # the run ends with the headline, not a dump of every metric
    tail = proc.stdout.strip().splitlines()
    assert tail[-1].startswith("run directory:") and "summary.md" in tail[-1]
    head = "\n".join(tail[-7:-1])
    for needle in (
        "face model",
        "without generated pairs",
        "with generated pairs",
        "rank-1",
        "VR@FAR=1e-2",
        "chance: rank-1 0.100",
        "with - without =",
    ):
        assert needle in head, (needle, head)
    assert len(tail) < 15, proc.stdout

    summary = (out / "summary.md").read_text()
    named = re.findall(r"\]\((pictures/[^)]+\.png)\)", summary)
    assert {"pictures/cmc.png", "pictures/roc.png", "pictures/generated_pairs.png"} <= set(named)
    for picture in named:
        with Image.open(out / picture) as im:
            assert im.width >= 400 and im.height >= 250, (picture, im.size)
    # generated pairs drawn from 64 px images, large: each tile at least 64 px wide
    with Image.open(out / "pictures/generated_pairs.png") as im:
        assert im.width >= 8 * 64
    # the setup table names what ran, never "-"
    setup = summary.split("## Setup")[1].split("##")[0]
    row = [c.strip() for c in setup.strip().splitlines()[2].strip("|").split("|")]
    assert row[3] == "synthetic-nir-vis" and row[4] == "synthetic-nir-vis" and "-" not in row[:5]
    stages = summary.split("## Stages")[1].split("## ")[0]
    for stage in ("face model: pretraining", "identity sampler", "dual generator", "fine-tuning", "evaluation"):
        assert stage in stages
    assert "64 px" in stages and "cpu" in stages
    assert "chance" in summary and "Generated identities" in summary
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["synthetic-nir-vis/chance_rank1"] == 0.1 and metrics["synthetic-nir-vis/probes"] == 30
    for arm in ("face-model", "without", "with"):
        assert 0.0 <= metrics[f"{arm}/synthetic-nir-vis/rank1"] <= 1.0
        assert metrics[f"{arm}/synthetic-nir-vis/rank1_se"] >= 0.0
    assert "face-model/synthetic-nir-vis/vis-vis-rank1" in metrics
    assert metrics["with-minus-without/synthetic-nir-vis/rank1"] == pytest.approx(
        metrics["with/synthetic-nir-vis/rank1"] - metrics["without/synthetic-nir-vis/rank1"]
    )
