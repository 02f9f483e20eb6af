"""facerun as a user runs it: one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import json


def test_help_lists_core_subcommands(run_facerun):
    out = run_facerun("--help").stdout
    for name in ("plugins", "info", "train", "eval", "extract", "generate", "data", "weights"):
        assert f"  {name}" in out


def test_unknown_backbone_is_one_line_with_suggestion(run_facerun):
    proc = run_facerun("info", "backbone", "smal-cnn", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "did you mean small-cnn" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_kind_names_allowed_values(run_facerun):
    proc = run_facerun("info", "backbones", "x", check=False)
    assert proc.returncode == 2 and "backbone" in proc.stderr and "Traceback" not in proc.stderr


def test_info_json_describes_a_core_backbone(run_facerun):
    data = json.loads(run_facerun("info", "backbone", "small-cnn", "--json").stdout)
    assert data["kind"] == "backbone" and data["embedding_size"] is None or isinstance(data["embedding_size"], int)
    assert "width" in data["parameters"]


def test_pipeline_option_without_backbone_is_a_usage_error(run_facerun):
    proc = run_facerun("--generator", "dvg", check=False)
    assert proc.returncode == 2 and "--backbone" in proc.stderr
