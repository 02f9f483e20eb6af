"""Batched image transforms: the model's input pipeline and the papers' augmentations.

Every transform maps canonical images ``[B, 3, H, W]`` (RGB, [0, 1]) to canonical images, with
per-sample randomness drawn from an optional ``torch.Generator`` (reproducible runs) and no Python
loop over samples or pixels. :func:`for_backbone` derives the whole pipeline from a backbone's
:class:`~facerec.api.InputSpec` (resize, crop, gray/BGR, scale, mean/std), so data preparation is
never guessed. Augmentations:

* ``RandomHorizontalFlip``, ``RandomCrop`` (with padding), ``RandomGrayscale`` (VGGFace2 p=0.2);
* ``ColorJitter`` (brightness/contrast/saturation, random order: AdaFace's photometric step);
* ``RandomErasing`` (torchvision semantics, added for HSFace training per Vec2Face issue #1);
* ``AdaFaceCrop`` (RandomResizedCrop box kept in place on a black canvas, no resize);
* ``LowResolution`` (down to U(min_scale, 1)*side then back up, random interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ..api import InputSpec


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator).to(device)


def _chance(p: float, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Per-sample Bernoulli(p) mask shaped [B, 1, 1, 1]."""
    return (_rand(n, generator, device) < p).view(n, 1, 1, 1)


def _gray(x: Tensor) -> Tensor:
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _box_mask(h: Tensor, w: Tensor, top: Tensor, left: Tensor, H: int, W: int) -> Tensor:
    """[B,1,H,W] bool mask of per-sample boxes (all arguments [B] integer tensors)."""
    rows = torch.arange(H, device=h.device).view(1, H, 1)
    cols = torch.arange(W, device=h.device).view(1, 1, W)
    top, left, h, w = (t.view(-1, 1, 1) for t in (top, left, h, w))
    return ((rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)).unsqueeze(1)


def _random_boxes(
    n: int,
    H: int,
    W: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample boxes of area U(scale)*H*W and log-uniform aspect ratio, clipped to the image."""
    area = (scale[0] + (scale[1] - scale[0]) * _rand(n, generator, device)) * H * W
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(n, generator, device)
    r = torch.exp(log_r)
    h = torch.sqrt(area * r).round().clamp(1, H).long()
    w = torch.sqrt(area / r).round().clamp(1, W).long()
    top = ((H - h + 1) * _rand(n, generator, device)).floor().long().clamp(max=H - 1)
    left = ((W - w + 1) * _rand(n, generator, device)).floor().long().clamp(max=W - 1)
    return h, w, top, left


def _steps(transforms: Iterable[Transform]) -> tuple[Transform, ...]:
    return tuple(transforms)  # typed: with converter=tuple mypy cannot infer the items


class Transform:
    """Base: ``t(images, generator=None)`` on canonical image batches."""

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


@attrs.frozen
class Compose(Transform):
    transforms: tuple[Transform, ...] = attrs.field(converter=_steps)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            images = t(images, generator)
        return images


@attrs.frozen
class Resize(Transform):
    """Resize the shorter side to ``size`` (an int) or to exactly (H, W); bilinear, antialiased."""

    size: int | tuple[int, int]

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        H, W = images.shape[-2:]
        if isinstance(self.size, int):
            s = self.size / min(H, W)
            new = (round(H * s), round(W * s))
        else:
            new = (self.size[0], self.size[1])
        if tuple(images.shape[-2:]) == new:
            return images
        return F.interpolate(images, size=new, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


@attrs.frozen
class CenterCrop(Transform):
    size: tuple[int, int] = attrs.field(converter=lambda s: (s, s) if isinstance(s, int) else tuple(s))

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        h, w = self.size
        top, left = (images.shape[-2] - h) // 2, (images.shape[-1] - w) // 2
        return images[..., top : top + h, left : left + w]


@attrs.frozen
class RandomCrop(Transform):
    """Per-sample random crop of ``size`` after zero ``padding`` (one gather, no loop)."""

    size: tuple[int, int] = attrs.field(converter=lambda s: (s, s) if isinstance(s, int) else tuple(s))
    padding: int = 0

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = F.pad(images, [self.padding] * 4) if self.padding else images
        B, _, H, W = x.shape
        h, w = self.size
        if h > H or w > W:
            raise ValueError(f"RandomCrop {self.size} is larger than the (padded) image {H}x{W}")
        top = ((H - h + 1) * _rand(B, generator, x.device)).floor().long()
        left = ((W - w + 1) * _rand(B, generator, x.device)).floor().long()
        rows = (top.view(B, 1) + torch.arange(h, device=x.device)).view(B, h, 1)
        cols = (left.view(B, 1) + torch.arange(w, device=x.device)).view(B, 1, w)
        b = torch.arange(B, device=x.device).view(B, 1, 1)
        return x[b, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # [B,h,w,C] -> [B,C,h,w]


@attrs.frozen
class RandomHorizontalFlip(Transform):
    p: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.where(_chance(self.p, len(images), generator, images.device), images.flip(-1), images)


@attrs.frozen
class RandomGrayscale(Transform):
    p: float = 0.2

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        gray = _gray(images).expand_as(images)
        return torch.where(_chance(self.p, len(images), generator, images.device), gray, images)


@attrs.frozen
class ColorJitter(Transform):
    """Per-sample brightness/contrast/saturation factors in [1-v, 1+v], applied in random order."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    random_order: bool = True

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B, dev = len(images), images.device
        ops = [i for i, v in enumerate((self.brightness, self.contrast, self.saturation)) if v > 0]
        if self.random_order and len(ops) > 1:
            ops = [ops[i] for i in torch.randperm(len(ops), generator=generator).tolist()]
        x = images
        for op in ops:
            v = (self.brightness, self.contrast, self.saturation)[op]
            f = (1 - v + 2 * v * _rand(B, generator, dev)).clamp(min=0).view(B, 1, 1, 1)
            if op == 0:
                x = x * f
            elif op == 1:
                m = _gray(x).mean(dim=(2, 3), keepdim=True)
                x = (x - m) * f + m
            else:
                g = _gray(x)
                x = (x - g) * f + g
            x = x.clamp(0, 1)
        return x


@attrs.frozen
class RandomErasing(Transform):
    """torchvision's RandomErasing (p, area scale, aspect ratio, fill value), per sample, batched."""

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B, _, H, W = images.shape
        boxes = _random_boxes(B, H, W, self.scale, self.ratio, generator, images.device)
        mask = _box_mask(*boxes, H, W) & _chance(self.p, B, generator, images.device)
        return images.masked_fill(mask, self.value)


@attrs.frozen
class AdaFaceCrop(Transform):
    """AdaFace: keep a RandomResizedCrop box where it is and black out the rest (no resize)."""

    p: float = 0.3
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B, _, H, W = images.shape
        boxes = _random_boxes(B, H, W, self.scale, self.ratio, generator, images.device)
        outside = ~_box_mask(*boxes, H, W) & _chance(self.p, B, generator, images.device)
        return images.masked_fill(outside, 0.0)


_MODES = ("nearest", "bilinear", "area", "bicubic")


@attrs.frozen
class LowResolution(Transform):
    """AdaFace low-res: shrink to U(min_scale, 1)*side, then back, with random interpolation modes.

    Samples drawing the same side are resized together (one interpolate per distinct side).
    """

    p: float = 0.3
    min_scale: float = 0.2
    modes: tuple[str, ...] = _MODES

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B, _, H, W = images.shape
        dev = images.device
        pick = _chance(self.p, B, generator, dev).view(B)
        side = ((self.min_scale + (1 - self.min_scale) * _rand(B, generator, dev)) * H).round().clamp(2, H).long()
        down_mode = torch.randint(len(self.modes), (B,), generator=generator).to(dev)
        up_mode = torch.randint(len(self.modes), (B,), generator=generator).to(dev)
        out = images.clone()
        for s in side[pick].unique().tolist():  # one group per distinct size, not per sample
            group = torch.nonzero(pick & (side == s)).view(-1)
            x = images[group]
            mode_d, mode_u = self.modes[int(down_mode[group[0]])], self.modes[int(up_mode[group[0]])]
            x = _interp(x, (int(s), max(2, round(W * s / H))), mode_d)
            out[group] = _interp(x, (H, W), mode_u).clamp(0, 1)
        return out


def _interp(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if mode == "nearest" or mode == "area":
        return F.interpolate(x, size=size, mode=mode)
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=size[0] < x.shape[-2])


@attrs.frozen
class Prepare(Transform):
    """Canonical images -> network input through the backbone's InputSpec (the last step)."""

    spec: InputSpec
    random_crop: bool = False  # training: random instead of centre crop after the resize

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        spec = self.spec
        if spec.resize is not None and self.random_crop:
            images = RandomCrop(spec.size)(Resize(spec.resize)(images), generator)
            spec = attrs.evolve(spec, resize=None)
        return spec.prepare(images)


def adaface_augmenter(crop: float = 0.3, low_res: float = 0.3, photometric: float = 0.3) -> Compose:
    """AdaFace's Augmenter(0.3, 0.3, 0.3) as used by SOTA-FR on HSFace: crop, low-res, photometric."""
    return Compose((AdaFaceCrop(p=crop), LowResolution(p=low_res), _Maybe(ColorJitter(0.5, 0.5, 0.5), photometric)))


@attrs.frozen
class _Maybe(Transform):
    """Apply ``inner`` to a random subset (probability p per sample)."""

    inner: Transform
    p: float

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.where(
            _chance(self.p, len(images), generator, images.device), self.inner(images, generator), images
        )


def for_backbone(
    spec: InputSpec,
    *,
    train: bool = False,
    flip: bool = True,
    adaface: bool = False,
    jitter: float = 0.0,
    grayscale: float = 0.0,
    erasing: float = 0.0,
    extra: Sequence[Transform] = (),
) -> Compose:
    """The input pipeline a backbone asks for, with the chosen training augmentations before it.

    Evaluation (``train=False``) is exactly ``spec.prepare``. Training adds, in this order:
    AdaFace augmenter, colour jitter, random grayscale, flip, ``extra``, random erasing, then the
    InputSpec (random instead of centre crop when the spec resizes first, as VGGFace2 trains).
    torchvision erases after Normalize with 0; erasing before it with the canonical value that
    normalises to 0 (``mean / scale``, e.g. 0.5 for [-1, 1] models) gives the same tensor.
    """
    if not train:
        return Compose((Prepare(spec),))
    steps: list[Transform] = []
    if adaface:
        steps.append(adaface_augmenter())
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter))
    if grayscale > 0:
        steps.append(RandomGrayscale(grayscale))
    if flip:
        steps.append(RandomHorizontalFlip())
    steps.extend(extra)
    if erasing > 0:
        steps.append(RandomErasing(p=erasing, value=min(max(spec.mean[0] / spec.scale, 0.0), 1.0)))
    steps.append(Prepare(spec, random_crop=True))
    return Compose(tuple(steps))


__all__ = [
    "Transform",
    "Compose",
    "Resize",
    "CenterCrop",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomGrayscale",
    "ColorJitter",
    "RandomErasing",
    "AdaFaceCrop",
    "LowResolution",
    "Prepare",
    "adaface_augmenter",
    "for_backbone",
]
