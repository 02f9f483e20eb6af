"""Weights: safetensors round trip, strict errors, safe legacy readers, convert and offline pull (real CLI)."""

from __future__ import annotations

import hashlib
import os
import pickle
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import facerec
from facerec.nn import SmallCNN
from facerec.errors import WeightsError
from facerec.weights import WeightCard, WeightFile, load_weights, read_checkpoint, read_metadata, save_weights


def _model(seed: int = 0, **params) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(embedding_size=16, width=8, **params)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip_with_metadata(tmp_path):
    a, b = _model(0), _model(1)
    assert not _same(a, b)
    path = save_weights(a, tmp_path / "w.safetensors", {"arch": "small-cnn", "params": {"width": 8}})
    assert not (tmp_path / "w.safetensors.tmp").exists()
    facerec.load_weights(b, path)
    assert _same(a, b)
    meta = read_metadata(path)
    assert meta["arch"] == "small-cnn" and meta["params"] == '{"width": 8}'


def test_strict_errors_list_every_mismatch(tmp_path):
    state = _model().state_dict()
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(2)
    state["bn.weight"] = torch.zeros(3)
    save_weights(state, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError) as err:
        load_weights(_model(), tmp_path / "bad.safetensors")
    msg = str(err.value)
    assert "\n" not in msg and "bad.safetensors does not fit SmallCNN" in msg
    assert "missing 1 keys: fc.bias" in msg and "unexpected 1 keys: extra.weight" in msg
    assert "bn.weight (3,) vs model (16,)" in msg


def test_original_pth_with_prefix_and_wrapper(tmp_path):
    a = _model(3)
    wrapped = {"epoch": 7, "state_dict": OrderedDict(("module." + k, v) for k, v in a.state_dict().items())}
    torch.save(wrapped, tmp_path / "ckpt.pth.tar")
    b = load_weights(_model(4), tmp_path / "ckpt.pth.tar")
    assert _same(a, b)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_no_file_can_execute_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"w": torch.zeros(1), "x": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused by the safe loader"):
        read_checkpoint(tmp_path / "evil.pth")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"w": np.zeros(2), "x": _Evil()}, protocol=2))
    with pytest.raises(WeightsError, match="refused by the safe loader: it references posix.system"):
        read_checkpoint(tmp_path / "evil.pkl")
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(Vprint(1)\ntR.")
    with pytest.raises(WeightsError, match="refused by the safe loader: it references builtins.eval"):
        read_checkpoint(tmp_path / "eval.pkl")
    assert not (tmp_path / "pwned").exists()


def test_vggface2_style_latin1_pickle(tmp_path):
    """A dict of numpy arrays pickled with protocol 2, as VGGFace2-pytorch ships its *_weight.pkl."""
    a = _model(5)
    arrays = {k: v.numpy().copy() for k, v in a.state_dict().items()}
    (tmp_path / "resnet_weight.pkl").write_bytes(pickle.dumps(arrays, protocol=2))
    state = read_checkpoint(tmp_path / "resnet_weight.pkl")
    assert state.keys() == arrays.keys() and all(isinstance(v, torch.Tensor) for v in state.values())
    assert _same(a, load_weights(_model(6), tmp_path / "resnet_weight.pkl"))
    # a Python 2 era pickle: arrays' data as latin-1 "str" (BINSTRING), read with encoding="latin1"
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    py2 = _py2_pickle_of_array(arr)
    (tmp_path / "py2.pkl").write_bytes(py2)
    got = read_checkpoint(tmp_path / "py2.pkl")
    assert torch.equal(got["conv1.weight"], torch.from_numpy(arr))


def _py2_pickle_of_array(arr: np.ndarray) -> bytes:
    """Bytes exactly as Python 2's cPickle (protocol 2) writes {'conv1.weight': arr}."""
    import struct

    data = arr.tobytes()
    out = b"\x80\x02}q\x00U\x0cconv1.weightq\x01"
    out += b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04"
    out += b"(K\x01K\x02K\x03\x86cnumpy\ndtype\nq\x05U\x02f4K\x00K\x01\x87Rq\x06(K\x03U\x01<NNNJ\xff\xff\xff\xff"
    out += b"J\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<I", len(data)) + data + b"tbs."
    return out


def test_cli_convert_verifies_by_strict_load(tmp_path, run_facerun):
    a = _model(7)
    torch.save({"state_dict": {"module." + k: v for k, v in a.state_dict().items()}}, tmp_path / "orig.pth")
    out = tmp_path / "small.safetensors"
    proc = run_facerun(
        "weights",
        "convert",
        str(tmp_path / "orig.pth"),
        "--arch",
        "small-cnn",
        "--param",
        "embedding_size=16",
        "--param",
        "width=8",
        "--to",
        str(out),
    )
    assert "verified by strict reload" in proc.stdout
    assert _same(a, load_weights(_model(8), out))
    meta = read_metadata(out)
    assert (
        meta["arch"] == "small-cnn"
        and meta["source_sha256"] == hashlib.sha256((tmp_path / "orig.pth").read_bytes()).hexdigest()
    )
    # the wrong architecture parameters: one line naming the mismatch, non-zero exit
    bad = run_facerun(
        "weights",
        "convert",
        str(tmp_path / "orig.pth"),
        "--arch",
        "small-cnn",
        "--to",
        str(tmp_path / "bad.safetensors"),
        check=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "shape mismatch" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.safetensors").exists()


def _fake_plugin(root: Path, sha: str) -> None:
    """A real installed distribution (dist-info + entry point) that registers one weight card."""
    (root / "fakecards").mkdir(parents=True)
    (root / "fakecards" / "__init__.py").write_text(
        textwrap.dedent(f"""
        from facerec.weights import WeightCard, WeightFile
        FACEREC_API = 1
        CARD = WeightCard(name="tiny-cnn-test", arch="small-cnn", params={{"embedding_size": 16, "width": 8}},
                          files=[WeightFile("tiny.safetensors", sha256="{sha}", hf_repo="facerec-test/tiny-cnn")],
                          licence="MIT", metrics={{"synthetic-pairs": 0.93}}, origin="test fixture")
    """)
    )
    info = root / "fakecards-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakecards\nVersion: 0.1\nRequires-Dist: facerec-core>=1.0\n"
    )
    (info / "entry_points.txt").write_text("[facerec.weights]\ntiny-cnn-test = fakecards:CARD\n")


def _fake_hub_cache(hf_home: Path, payload: bytes) -> Path:
    """The standard huggingface_hub cache layout for one file at revision main."""
    repo = hf_home / "hub" / "models--facerec-test--tiny-cnn"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = repo / "blobs" / hashlib.sha256(payload).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(payload)
    snap = repo / "snapshots" / commit / "tiny.safetensors"
    snap.parent.mkdir(parents=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_pull_offline_from_fabricated_cache(tmp_path, run_facerun):
    weights_file = save_weights(_model(9), tmp_path / "tiny.safetensors", {"arch": "small-cnn"})
    payload = weights_file.read_bytes()
    plugin = tmp_path / "site"
    _fake_plugin(plugin, hashlib.sha256(payload).hexdigest())
    hf_home = tmp_path / "hf"
    snap = _fake_hub_cache(hf_home, payload)
    env = {"PYTHONPATH": str(plugin), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)

    listed = run_facerun("weights", "list", env=env)
    assert "tiny-cnn-test" in listed.stdout and "hf://facerec-test/tiny-cnn/tiny.safetensors" in listed.stdout
    assert "synthetic-pairs 0.93" in listed.stdout

    pulled = run_facerun("weights", "pull", "tiny-cnn-test", env=env)
    assert str(snap) in pulled.stdout and "sha256 verified" in pulled.stdout
    assert _same(_model(9), load_weights(_model(0), Path(pulled.stdout.split()[0])))

    # tampered cache -> sha256 error; missing file offline -> clear error, both one line
    blob = snap.resolve()
    blob.write_bytes(payload[:-1] + b"\x00")
    bad = run_facerun("weights", "pull", "tiny-cnn-test", env=env, check=False)
    assert bad.returncode != 0 and "expected" in bad.stderr and "sha256" in bad.stderr
    assert "Traceback" not in bad.stderr
    snap.unlink()
    gone = run_facerun("weights", "pull", "tiny-cnn-test", env=env, check=False)
    assert gone.returncode != 0 and "HF_HUB_OFFLINE is set" in gone.stderr


def test_unreadable_files(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        read_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_weights(_model(), tmp_path / "junk.safetensors")


def test_model_from_weights_metadata(tmp_path):
    from facerec.weights import model_from_weights

    a = _model(11)
    path = save_weights(
        a,
        tmp_path / "m.safetensors",
        {"arch": "small-cnn", "kind": "backbone", "params": {"embedding_size": 16, "width": 8}},
    )
    b = model_from_weights(path)
    assert isinstance(b, SmallCNN) and _same(a, b)
    save_weights(a, tmp_path / "bare.safetensors")
    with pytest.raises(WeightsError, match="no 'arch' in the safetensors metadata"):
        model_from_weights(tmp_path / "bare.safetensors")


def test_resolve_paths_and_names(tmp_path):
    from facerec.weights import resolve

    path = save_weights(_model(), tmp_path / "m.safetensors")
    assert resolve(str(path)) == path
    with pytest.raises(WeightsError, match="neither a file nor a registered card"):
        resolve(tmp_path / "missing.safetensors")


def test_card_value_type():
    card = WeightCard(name="x", arch="small-cnn", files=[{"filename": "a.safetensors", "sha256": "ab"}])
    assert card.files == (WeightFile("a.safetensors", sha256="ab"),) and card.format == "safetensors"
    assert card.to_dict()["files"][0]["filename"] == "a.safetensors"
    with pytest.raises(ValueError):
        WeightCard(name="x", arch="y", files=[], format="zip")
