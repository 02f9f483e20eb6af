"""The environment lists exactly the facerec distributions nox installed into it (no more, no fewer)."""

from __future__ import annotations

import json
import os

import pytest

EXPECTED = os.environ.get("FACEREC_EXPECT_DISTS")


@pytest.mark.skipif(not EXPECTED, reason="set by nox (FACEREC_EXPECT_DISTS): the dev env has everything installed")
def test_facerun_plugins_lists_exactly_the_installed_distributions(run_facerun):
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    listed = {r["distribution"] for r in rows}
    assert listed == set(EXPECTED.split(","))
    assert not [r for r in rows if r["error"]], [r for r in rows if r["error"]]
    # core's built-ins are always there, registered through the same entry-point groups
    assert {"small-cnn", "arcface", "synthetic", "synthetic-pairs", "train"} <= {r["name"] for r in rows}
    # IResNet is core's (facerec.nn), whichever plugins are installed: none registers it again
    iresnets = {
        r["name"]: r["distribution"] for r in rows if r["kind"] == "backbone" and r["name"].startswith("iresnet")
    }
    assert iresnets == dict.fromkeys(
        ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "iresnet50-se", "iresnet100-se"),
        "facerec-core",
    )
