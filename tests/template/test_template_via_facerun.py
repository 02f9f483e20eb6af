"""The plugin template, installed next to core only, works through facerun with core components:
a third-party plugin needs no change to core."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.skipif(
    "facerec-template" not in os.environ.get("FACEREC_EXPECT_DISTS", "facerec-template"),
    reason="needs the template plugin installed (nox -s template)",
)


def test_template_components_are_listed(run_facerun):
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    mine = {(r["kind"], r["name"]) for r in rows if r["distribution"] == "facerec-template"}
    assert mine == {("backbone", "template-net"), ("protocol", "template-rank1")}


@pytest.mark.parametrize("backbone,protocol", [("template-net", "synthetic-pairs"), ("small-cnn", "template-rank1")])
def test_template_combines_with_core_components(run_facerun, tmp_path, backbone, protocol):
    out = tmp_path / "run"
    run_facerun(
        "--backbone",
        backbone,
        "--head",
        "cosface",
        "--protocol",
        protocol,
        "--param",
        "train.steps=4",
        "--param",
        "train.batch_size=8",
        "--param",
        "dataset.num_ids=8",
        "--param",
        "dataset.per_id=2",
        "--param",
        f"protocol.{'num_ids=8' if protocol == 'template-rank1' else 'pairs_per_fold=20'}",
        "--out",
        str(out),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    key = f"{protocol}/rank1" if protocol == "template-rank1" else f"{protocol}/accuracy"
    assert 0.0 <= metrics[key] <= 1.0
    assert metrics["step"] == 4 and (out / "config.json").is_file()
