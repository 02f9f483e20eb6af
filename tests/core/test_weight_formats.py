"""Weight-file formats as registered components, cards that name files of installed Python packages,
and `--weights` taking a card or a file with the provenance recorded in the report (issue 21)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import facerec
from facerec import registry
from facerec.errors import WeightsError
from facerec.weights import (
    WeightCard,
    WeightFile,
    format_of,
    load_weights,
    package_file,
    read_checkpoint,
    save_weights,
    sha256,
    weight_formats,
)


def _net():
    torch.manual_seed(0)
    return facerec.create("backbone", "small-cnn", width=4, image_size=32, embedding_size=16).eval()


def test_core_formats_are_registered_and_listed(run_facerun):
    names = {c.name for c in registry.components("weight-format")}
    assert {"safetensors", "torch", "pickle", "npz"} <= names
    good, bad = weight_formats()
    assert not bad and {f.name for f in good} >= names
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    assert {r["name"] for r in rows if r["kind"] == "weight-format"} >= {"safetensors", "torch", "pickle", "npz"}


def test_format_is_found_by_content_before_name(tmp_path):
    net = _net()
    st = save_weights(net, tmp_path / "w.safetensors")
    renamed = shutil.copy(st, tmp_path / "weights.bin")  # a safetensors file under a torch-like name
    assert format_of(st).name == "safetensors" and format_of(renamed).name == "safetensors"
    load_weights(_net(), renamed)  # native: no conversion, strict
    torch.save(net.state_dict(), tmp_path / "w.pth")
    assert format_of(tmp_path / "w.pth").name == "torch"
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    assert format_of(tmp_path / "w.npz").name == "npz"
    assert set(read_checkpoint(tmp_path / "w.npz")) == set(net.state_dict())
    (tmp_path / "junk.xyz").write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="junk.xyz: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.xyz")
    with pytest.raises(WeightsError, match="not found"):
        format_of(tmp_path / "absent.pth")


def test_card_file_from_an_installed_python_package():
    # facerec-core itself is an installed package: its weights/__init__.py stands in for a model file
    where = "facerec:weights/__init__.py"
    path = package_file(
        WeightCard("demo", "small-cnn", [WeightFile("__init__.py", package=where)]),
        WeightFile("__init__.py", package=where),
    )
    assert path.name == "__init__.py" and path.is_file()
    with pytest.raises(WeightsError) as err:
        f = WeightFile("m.dat", package="no_such_models_pkg:models/m.dat", pip="no-such-models==1.0")
        package_file(WeightCard("demo", "small-cnn", [f]), f)
    assert "not installed: pip install no-such-models==1.0" in str(err.value)
    with pytest.raises(WeightsError, match="has no models/absent.dat"):
        f = WeightFile("absent.dat", package="facerec:models/absent.dat")
        package_file(WeightCard("demo", "small-cnn", [f]), f)
    with pytest.raises(WeightsError, match="import_name:path"):
        WeightFile("x", package="facerec.data:x")


def test_eval_records_resolved_weights_and_input_spec(shared_data, run_facerun, tmp_path):
    root = shared_data / "lfw"
    w = save_weights(_net(), tmp_path / "w.safetensors")
    bb = [
        "--backbone",
        "small-cnn",
        "--param",
        "backbone.width=4",
        "--param",
        "backbone.image_size=32",
        "--param",
        "backbone.embedding_size=16",
    ]
    run_facerun(
        "eval",
        *bb,
        "--weights",
        str(w),
        "-p",
        "pairs",
        "--data",
        str(root),
        "--out",
        str(tmp_path / "r"),
        "--param",
        "protocol.max_pairs=40",
        "-q",
    )
    info = json.loads((tmp_path / "r" / "metrics.json").read_text())["info"]
    assert info["weights_file"] == str(w.resolve()) and info["weights_sha256"] == sha256(w)
    assert info["input_spec"]["size"] == [32, 32] and info["input_spec"]["template"] == "arcface112"
    assert info["data_template"] == "arcface112" and info["warp"] == "none"
    # neither a file nor a card: one line that says so
    bad = run_facerun("eval", *bb, "--weights", "no-such-card", "-p", "pairs", "--data", str(root), check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "neither a file nor a registered card" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = run_facerun("eval", *bb, "-p", "pairs", "--data", str(root), "--data-template", "nope", check=False)
    assert "unknown alignment template 'nope'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_unknown_format_readers_do_not_break_loading(tmp_path):
    """A weight format that fails to sniff never stops core's readers (the sniffer is guarded)."""
    from facerec.weights import WeightFormat

    def boom(head):
        raise RuntimeError("sniffer bug")

    fmt = WeightFormat("broken", lambda p: {}, (), boom)
    assert fmt.by_content(b"anything") is False
