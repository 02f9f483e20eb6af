"""Parity with dlib itself (the dlib-bin wheel) on real faces: the same 150x150 chips give the same
descriptors, through the Python API, the fast inference path and `facerun extract`; and the dlib150
template is the geometry of dlib's own face chips.

dlib is given the chip directly: ``face_recognition_model_v1.compute_face_descriptor(chip)`` with a
150x150 RGB uint8 image is dlib's overload for already aligned chips (the same network, no cropping),
so both sides see identical pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facerec
from facerec.data.align import get_template, template_warp
from facerec.data.decode import read_image
from facerec.inference import embed_tensor, optimize_for_inference
from facerec.protocols.common import load_features

PEOPLE = (
    "Aaron_Peirsol",
    "Abdullah_Gul",
    "Angelina_Jolie",
    "Colin_Powell",
    "Gloria_Macapagal_Arroyo",
    "Jennifer_Lopez",
    "Serena_Williams",
    "Vladimir_Putin",
)
MIN_COSINE = 0.9999


def _cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def faces(lfw_dir):
    """Two images of each of 8 people from the shared LFW (ArcFace-112 aligned)."""
    files = []
    for name in PEOPLE:
        found = sorted((lfw_dir / "lfw-aligned-112x112" / name).glob("*.jpg"))[:2]
        assert found, name
        files += found
    return files


@pytest.fixture(scope="module")
def chips(faces) -> torch.Tensor:
    """dlib chips of the faces: warped from ArcFace 112 into dlib150 as facerun does, as uint8 [N, 3, 150, 150]."""
    warp = template_warp("arcface112", "dlib150", 150)
    images = torch.stack([read_image(f, warp.load_size) for f in faces])
    return (warp(images) * 255).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def reference(dlib, dlib_dat, chips) -> np.ndarray:
    rec = dlib.face_recognition_model_v1(str(dlib_dat))
    hwc = [np.ascontiguousarray(c.permute(1, 2, 0).numpy()) for c in chips]
    return np.stack([np.asarray(d) for d in rec.compute_face_descriptor(hwc)])


@pytest.fixture(scope="module")
def port(dlib_dat):
    return facerec.load_weights(facerec.create("backbone", "dlib-resnet29"), dlib_dat).eval()


def test_descriptors_equal_dlibs_on_real_face_chips(port, chips, reference):
    with torch.inference_mode():
        eager = port.embed(chips.float() / 255).numpy()
    fast = embed_tensor(optimize_for_inference(port), chips.float() / 255, batch_size=5).numpy()
    assert reference.shape == (16, 128)
    for got in (eager, fast):
        assert _cosine(got, reference).min() >= MIN_COSINE
        assert np.abs(got - reference).max() < 1e-3  # dlib's raw (unnormalised) descriptor, norm ~1.5
    # and they do recognise: same person closer than anyone else, by dlib's own 0.6 distance rule
    d = np.linalg.norm(eager[:, None] - eager[None], axis=-1)
    same = np.repeat(np.arange(8), 2)
    assert (d[same[:, None] == same[None]] < 0.6).all()
    assert (d[same[:, None] != same[None]] > 0.6).mean() > 0.95


def test_facerun_extract_on_chips_and_on_arcface_images_matches_dlib(faces, chips, reference, run_facerun, tmp_path):
    from PIL import Image

    for i, (f, c) in enumerate(zip(faces, chips)):
        (tmp_path / "chips" / f.parent.name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(c.permute(1, 2, 0).numpy()).save(tmp_path / "chips" / f.parent.name / f"{i:02d}.png")
    out = tmp_path / "chips.safetensors"
    proc = run_facerun(
        "extract",
        "--backbone",
        "dlib-resnet29",
        "--weights",
        "dlib-resnet29",
        "--data",
        str(tmp_path / "chips"),
        "--data-template",
        "dlib150",
        "--out",
        str(out),
        "-q",
    )
    assert "warped" not in proc.stderr  # already dlib chips: nothing to warp
    table = load_features(out)
    order = np.argsort([k for k in table.keys_list])
    assert _cosine(table.embeddings.numpy()[order], reference).min() >= MIN_COSINE
    assert table.meta["weights_card"] == "dlib-resnet29" and table.meta["data_template"] == "dlib150"
    # the ArcFace-aligned originals: facerun warps them itself (float, not rounded to uint8 as dlib needs)
    for f in faces:
        (tmp_path / "lfw" / f.parent.name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "lfw" / f.parent.name / f.name).write_bytes(f.read_bytes())
    out2 = tmp_path / "lfw.safetensors"
    proc = run_facerun(
        "extract",
        "--backbone",
        "dlib-resnet29",
        "--weights",
        "dlib-resnet29",
        "--data",
        str(tmp_path / "lfw"),
        "--data-template",
        "arcface112",
        "--out",
        str(out2),
        "-q",
    )
    assert "warped to dlib150" in proc.stderr
    t2 = load_features(out2)
    index = {f"{f.parent.name}/{f.name}": i for i, f in enumerate(faces)}
    rows = [index[k] for k in t2.keys_list]
    assert _cosine(t2.embeddings.numpy(), reference[rows]).min() >= 0.999  # rounding the chip to uint8 aside


@pytest.mark.parametrize("angle, scale", [(0.2, 2.6), (0.0, 1.5), (-0.3, 2.0)])
def test_dlib150_is_the_geometry_of_dlibs_own_chips(dlib, angle, scale):
    """Blobs at dlib's 5-point reference, placed by a similarity in a photo (a face ``scale`` times the
    chip's size): dlib.get_face_chip (padding 0.25) puts them where facerec-dlib's chip geometry says,
    and the eye-corner midpoints where the dlib150 template has its eyes."""
    from facerec_dlib.template import _EYE_CORNERS_5PT, chip_position

    unit = np.vstack([_EYE_CORNERS_5PT, [0.4901123135679, 0.6277975316475]])  # dlib's part order
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = np.round(unit @ (100 * scale * rot).T + 110)  # integer landmarks: dlib.point is integral
    yy, xx = np.mgrid[0:480, 0:480]
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (1.2 * scale) ** 2)) for x, y in pts)
    rgb = np.ascontiguousarray(np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, -1))
    det = dlib.full_object_detection(dlib.rectangle(0, 0, 479, 479), [dlib.point(int(x), int(y)) for x, y in pts])
    chip = dlib.get_face_chip(rgb, det, size=150, padding=0.25)[..., 0].astype(np.float64)

    def centroid(x0, y0, r=5):
        x0, y0 = int(round(x0)), int(round(y0))
        win = np.clip(chip[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1] - 2, 0, None)
        ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        return np.array([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])

    want = chip_position(unit)
    got = np.array([centroid(*p) for p in want])
    assert np.abs(got - want).max() < 0.55, got - want  # landmark rounding and dlib's pyramid aside
    eyes = np.array([got[2:4].mean(0), got[0:2].mean(0)])
    assert np.abs(eyes - get_template("dlib150").points[:2]).max() < 0.5
