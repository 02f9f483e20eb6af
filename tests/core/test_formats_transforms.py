"""Batched transforms: per-sample randomness, exact geometry, reproducibility, InputSpec-derived pipelines."""

from __future__ import annotations

import torch

from facerec.api import InputSpec
from facerec.data import transforms as T


def _batch(n: int = 32, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.05


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_is_per_sample():
    x = _batch()
    y = T.RandomHorizontalFlip(0.5)(x, _g())
    same = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 0 < int(flipped.sum()) < len(x)
    assert torch.equal(T.RandomHorizontalFlip(1.0)(x), x.flip(-1))


def test_random_crop_takes_real_windows():
    x = _batch(16, 20)
    y = T.RandomCrop(16, padding=2)(x, _g(1))
    assert y.shape == (16, 3, 16, 16)
    padded = torch.nn.functional.pad(x, [2] * 4)
    windows = padded.unfold(2, 16, 1).unfold(3, 16, 1)  # [B, C, 9, 9, 16, 16]
    match = (windows == y[:, :, None, None]).all(-1).all(-1).all(1)  # [B, 9, 9]
    assert bool(match.flatten(1).any(1).all())  # every output is one window of its own input
    offsets = match.flatten(1).float().argmax(1)
    assert len(offsets.unique()) > 3  # and the windows differ between samples


def test_reproducible_with_a_generator():
    x = _batch()
    aug = T.for_backbone(
        InputSpec(size=24, mean=0.5, std=0.5), train=True, adaface=True, jitter=0.3, grayscale=0.2, erasing=0.5
    )
    a, b, c = aug(x, _g(7)), aug(x, _g(7)), aug(x, _g(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= -1 and float(a.max()) <= 1


def test_color_jitter_factors():
    x = _batch()
    y = T.ColorJitter(brightness=0.4)(x * 0.5, _g())  # no clipping at half brightness
    ratio = y / (x * 0.5)
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample.min(1).values, per_sample.max(1).values, atol=1e-4)  # one factor per image
    assert float(per_sample[:, 0].min()) >= 0.6 - 1e-5 and float(per_sample[:, 0].max()) <= 1.4 + 1e-5
    assert per_sample[:, 0].std() > 0.05
    gray = T.ColorJitter(saturation=1.0)(x, _g())  # factors in [0, 2]: some images lose colour entirely
    assert gray.shape == x.shape
    g = T.RandomGrayscale(1.0)(x)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])


def _box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = mask.any(1).nonzero().view(-1), mask.any(0).nonzero().view(-1)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_erasing_and_adaface_crop_are_rectangles():
    x = _batch(16, 32)
    erased = T.RandomErasing(p=1.0, value=0.0)(x, _g(2))
    kept = T.AdaFaceCrop(p=1.0)(x, _g(3))
    for b in range(16):
        zero = (erased[b] == 0).all(0)
        r0, r1, c0, c1 = _box(zero)
        assert bool(zero[r0 : r1 + 1, c0 : c1 + 1].all())  # the erased region is exactly one rectangle
        area = (r1 - r0 + 1) * (c1 - c0 + 1) / 32**2
        assert 0.02 * 0.5 <= area <= 0.33 * 1.5
        assert torch.equal(erased[b][:, ~zero], x[b][:, ~zero])
        inside = (kept[b] != 0).any(0)
        r0, r1, c0, c1 = _box(inside)
        assert torch.equal(
            kept[b][:, r0 : r1 + 1, c0 : c1 + 1], x[b][:, r0 : r1 + 1, c0 : c1 + 1]
        )  # crop kept in place
        box = torch.zeros(32, 32, dtype=torch.bool)
        box[r0 : r1 + 1, c0 : c1 + 1] = True
        assert bool((kept[b][:, ~box] == 0).all())  # black outside
    assert T.RandomErasing(p=0.0)(x, _g()).equal(x)


def test_low_resolution_removes_detail():
    x = _batch(24, 32)
    y = T.LowResolution(p=1.0, min_scale=0.2)(x, _g(4))
    assert y.shape == x.shape and not torch.equal(y, x)
    detail = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert detail(y) < 0.8 * detail(x)
    half = T.LowResolution(p=0.5)(x, _g(5))
    unchanged = (half == x).flatten(1).all(1)
    assert 0 < int(unchanged.sum()) < len(x)


def test_for_backbone_follows_the_input_spec():
    vgg = InputSpec(size=224, color="BGR", scale=255.0, mean=(91.4953, 103.8827, 131.0912), resize=256)
    x = _batch(4, 300)
    assert torch.equal(T.for_backbone(vgg)(x), vgg.prepare(x))  # evaluation = exactly the spec
    train = T.for_backbone(vgg, train=True, grayscale=0.2)(x, _g())
    assert train.shape == (4, 3, 224, 224)
    lightcnn = InputSpec(size=128, color="GRAY", resize=144)
    y = T.for_backbone(lightcnn, train=True)(_batch(4, 144), _g())
    assert y.shape == (4, 1, 128, 128)
