"""5-point alignment: batched similarity estimation and warping land landmarks on the template."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facerec.data import align
from facerec.errors import FacerecError


def _random_similarity(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    ang = (torch.rand(n, generator=g) - 0.5) * 1.2
    scale = 0.6 + torch.rand(n, generator=g) * 0.8
    t = torch.rand(n, 2, generator=g) * 60 + 10
    m = torch.zeros(n, 2, 3, dtype=torch.float64)
    m[:, 0, 0] = scale * torch.cos(ang)
    m[:, 0, 1] = -scale * torch.sin(ang)
    m[:, 1, 0] = scale * torch.sin(ang)
    m[:, 1, 1] = scale * torch.cos(ang)
    m[:, :, 2] = t
    return m


def _apply(m, pts):
    pts = torch.as_tensor(pts, dtype=torch.float64)
    return pts @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


@pytest.mark.parametrize("name", sorted(align.TEMPLATES))
def test_similarity_transform_recovers_exact_batch(name):
    tpl = align.TEMPLATES[name]
    m = _random_similarity(16)
    src = _apply(m, tpl.points)  # landmarks of faces placed by a known similarity
    est = align.estimate(src.numpy(), name)
    back = torch.stack([_apply(est[i : i + 1], src[i])[0] for i in range(16)])
    np.testing.assert_allclose(back.numpy(), np.broadcast_to(tpl.points, back.shape), atol=1e-9)


def test_least_squares_with_noise_and_reflection_free():
    pts = align.TEMPLATES["arcface112"].points
    noisy = pts + np.random.default_rng(0).normal(scale=0.5, size=pts.shape)
    m = align.similarity_transform(torch.as_tensor(noisy)[None], torch.as_tensor(pts))[0]
    assert torch.linalg.det(m[:, :2]) > 0  # a rotation+scale, never a mirror
    resid = (_apply(m[None], noisy)[0] - torch.as_tensor(pts)).norm(dim=1)
    assert float(resid.max()) < 2.0


def _blob_image(points, size_hw, sigma=1.5):
    h, w = size_hw
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    img = torch.zeros(h, w, dtype=torch.float64)
    for x, y in points:
        img += torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img.float().expand(3, h, w)


def _peaks(img, points, radius=4):
    out = []
    for x, y in points:
        x0, y0 = int(round(x)), int(round(y))
        win = img[0, y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        iy, ix = np.unravel_index(int(win.argmax()), win.shape)
        out.append((x0 - radius + ix, y0 - radius + iy))
    return np.array(out, dtype=float)


@pytest.mark.parametrize("name", ["arcface112", "lightcnn144", "dcr120"])
def test_warp_puts_landmark_blobs_on_the_template(name):
    tpl = align.TEMPLATES[name]
    m = _random_similarity(3, seed=1)
    # faces in a 260x260 canvas whose landmarks are the template moved by m
    lms = _apply(m, tpl.points).numpy()
    assert lms.min() > 5 and lms.max() < 255  # every landmark inside the canvas
    imgs = torch.stack([_blob_image(lm, (260, 260)) for lm in lms])
    out = align.align(imgs, lms, name)
    assert out.shape == (3, 3, tpl.size, tpl.size)
    for i in range(3):
        got = _peaks(out[i], tpl.points)
        assert np.abs(got - tpl.points).max() <= 1.0 + 1e-9


def test_identity_alignment_reproduces_real_face(shared_data):
    from facerec.data.decode import read_image

    img = read_image(next((shared_data / "lfw" / "lfw-aligned-112x112").glob("Aaron_Peirsol/*.jpg")))
    pts = align.TEMPLATES["arcface112"].points
    out = align.align(img[None], pts[None], "arcface112")
    torch.testing.assert_close(out[0], img, atol=1e-5, rtol=0)
    # rotated into a bigger canvas and back: the interior matches within interpolation error
    c, sn = 1.3 * math.cos(0.3), 1.3 * math.sin(0.3)  # rotate 0.3 rad, upscale 1.3, stays inside 220x220
    m = torch.tensor([[[c, -sn, 60.0], [sn, c, 40.0]]], dtype=torch.float64)
    canvas = align.warp_affine(img[None], m, (220, 220))
    lm = _apply(m, pts).numpy()
    back = align.align_list([canvas[0]], lm, "arcface112")
    assert float((back[0, :, 20:92, 20:92] - img[:, 20:92, 20:92]).abs().mean()) < 0.01


def test_template_scaling_and_errors():
    t = align.TEMPLATES["arcface112"]
    np.testing.assert_allclose(t.at(224), (t.points + 0.5) * 2 - 0.5)
    with pytest.raises(FacerecError, match="unknown alignment template"):
        align.estimate(np.zeros((1, 5, 2)), "nope")
    with pytest.raises(FacerecError, match="non-finite"):
        align.estimate(np.full((1, 5, 2), np.nan))
    with pytest.raises(FacerecError, match="2 images but 1"):
        align.align(torch.zeros(2, 3, 50, 50), t.points[None])
    assert math.isclose(float(align.TEMPLATES["vggface2"].points[:, 0].mean()), 127.5, abs_tol=3)
