"""Low-resolution synthesis: the original's exact PIL path and the batched tensor path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facerec_dcr.lowres import degrade, lowres_batch, pil_lowres, pil_multiscale, pil_to_tensor


def _face(size=120, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(9 * xx + 3 * yy), np.cos(7 * yy), np.sin(5 * xx * yy * 4)], -1) * 0.4 + 0.5
    img = np.clip(base + 0.15 * rng.standard_normal((size, size, 3)), 0, 1)
    return Image.fromarray((img * 255).astype(np.uint8))


def test_pil_path_is_the_originals_transform():
    T = pytest.importorskip("torchvision.transforms")
    img = _face(130)  # not 120: the HR key is resized too
    items = pil_multiscale(img, [8, 12, 16, 20], size=120)
    ref_tf = T.Compose([T.Resize(120), T.ToTensor()])
    torch.testing.assert_close(items["0"], ref_tf(img), atol=0, rtol=0)
    for k, s in enumerate([8, 12, 16, 20], start=1):
        ref = ref_tf(img.resize((s, s), Image.LANCZOS))
        torch.testing.assert_close(items[str(k)], ref, atol=0, rtol=0)
        assert items[str(k)].shape == (3, 120, 120)


def test_batched_path_matches_pil_closely_and_loses_detail():
    imgs = [_face(120, seed) for seed in range(3)]
    batch = torch.stack([pil_to_tensor(i) for i in imgs])
    out = lowres_batch(batch, [8, 12, 16, 20])
    assert out.shape == (4, 3, 3, 120, 120) and float(out.min()) >= 0 and float(out.max()) <= 1
    for k, s in enumerate([8, 12, 16, 20]):
        ref = torch.stack([pil_to_tensor(pil_lowres(i, s)) for i in imgs])
        assert float((out[k] - ref).abs().mean()) < 0.02, s
    # smaller scale = less high-frequency content left
    detail = [float((out[k] - batch).abs().mean()) for k in range(4)]
    assert detail == sorted(detail, reverse=True)
    assert torch.equal(degrade(batch, 12), out[1])
