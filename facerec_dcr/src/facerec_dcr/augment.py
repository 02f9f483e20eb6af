"""Training views of the DCR stages: the HR image and one low-resolution version per scale, augmented.

Two paths, both offered (``recipe.lowres``):

* ``"tensor"`` (quick preset): batched on the device. The canonical batch is augmented once (flip, or
  ``--aug-plus``), then every LR view is that augmented image downsampled (bicubic, antialiased) to
  s x s and resized back, so HR and LR views stay aligned.
* ``"pil"`` (paper preset): the original's exact per-sample path. Each view is built from the image
  on its own: PIL Lanczos down to s x s (``Image.ANTIALIAS``), then the original's torchvision
  pipeline, drawn independently per view as the original's data loader did.

``--aug-plus`` is MoCo v2's augmentation, which every command of the DCR README uses:
RandomResizedCrop(size, scale=(0.2, 1)), ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
RandomGrayscale(0.2), Gaussian blur (sigma in [0.1, 2], PIL) with p=0.5, RandomHorizontalFlip.
Without it the original resizes and flips. Randomness comes from torch's global generator, which the
trainer seeds and checkpoints, so a resumed run draws the same views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from facerec.data.transforms import ColorJitter, RandomGrayscale
from facerec.errors import ParameterError
from PIL import Image, ImageFilter
from torch import Tensor

from .lowres import degrade

LOWRES_PATHS = ("tensor", "pil")
CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
BLUR_SIGMA = (0.1, 2.0)


def check_lowres(lowres: str) -> str:
    if lowres not in LOWRES_PATHS:
        raise ParameterError(
            f"recipe.lowres must be 'tensor' (batched) or 'pil' (the original's exact path), got {lowres!r}"
        )
    return lowres


# ------------------------------------------------------------------------------------ tensor path
def flip(images: Tensor) -> Tensor:
    mask = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def random_resized_crop(
    images: Tensor, size: int, scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = CROP_RATIO
) -> Tensor:
    """Per-sample crop of area U(scale) x image and log-uniform aspect ratio, resized to ``size``
    (bilinear); one ``grid_sample`` for the whole batch."""
    b, _, h, w = images.shape
    dev = images.device
    area = (scale[0] + (scale[1] - scale[0]) * torch.rand(b, device=dev)) * h * w
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(b, device=dev)
    r = torch.exp(log_r)
    ch = torch.sqrt(area * r).clamp(1, h)
    cw = torch.sqrt(area / r).clamp(1, w)
    top = (h - ch) * torch.rand(b, device=dev)
    left = (w - cw) * torch.rand(b, device=dev)
    # output pixel centres -> input coordinates, in grid_sample's [-1, 1] (align_corners=False)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = cw / w
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def hue_shift(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate each image's hue by ``shift`` [B] (fractions of a turn, torchvision's ``hue`` factor)."""
    h, s, v = _rgb_to_hsv(images.clamp(0, 1))
    return _hsv_to_rgb((h + shift.view(-1, 1, 1)) % 1.0, s, v)


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample Gaussian blur with standard deviation ``sigma`` [B] pixels (separable, reflect padding)."""
    b, c, h, w = images.shape
    radius = int(math.ceil(3 * float(sigma.max())))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None].to(images.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    y = images.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def aug_plus(images: Tensor, size: int | None = None) -> Tensor:
    """MoCo v2's augmentation on canonical images [B, 3, H, W] in [0, 1], batched (see module doc)."""
    b, dev = images.shape[0], images.device
    x = random_resized_crop(images, size or images.shape[-1]).clamp(0, 1)
    jittered = ColorJitter(0.4, 0.4, 0.4)(x)
    jittered = hue_shift(jittered, (torch.rand(b, device=dev) - 0.5) * 0.2).clamp(0, 1)
    x = torch.where((torch.rand(b, device=dev) < 0.8)[:, None, None, None], jittered, x)
    x = RandomGrayscale(0.2)(x)
    sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * torch.rand(b, device=dev)
    blurred = gaussian_blur(x, sigma)
    x = torch.where((torch.rand(b, device=dev) < 0.5)[:, None, None, None], blurred, x)
    return flip(x).clamp(0, 1)


def tensor_views(images: Tensor, scales: Sequence[int], *, augment: bool = True, plus: bool = False) -> list[Tensor]:
    """[HR, LR at each scale]: one augmentation shared by every view, then batched LR synthesis."""
    x = images.float()
    if plus:
        x = aug_plus(x)
    elif augment:
        x = flip(x)
    return [x] + [degrade(x, s) for s in scales]


# --------------------------------------------------------------------------------------- PIL path
class _PILBlur:
    """The original's MoCo GaussianBlur: PIL ``ImageFilter.GaussianBlur(radius=sigma)``, sigma ~ U[0.1, 2]."""

    def __call__(self, img: Image.Image) -> Image.Image:
        sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * float(torch.rand(()))
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))


def original_transform(size: int, plus: bool, augment: bool = True):
    """The original's training transform (torchvision on PIL images) without ToTensor/Normalize: the
    result is a canonical tensor, the model's input spec normalises it."""
    import torchvision.transforms as T

    if plus:
        steps = [
            T.RandomResizedCrop(size, scale=CROP_SCALE),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([_PILBlur()], p=0.5),
            T.RandomHorizontalFlip(),
        ]
    else:
        steps = [T.Resize((size, size))] + ([T.RandomHorizontalFlip()] if augment else [])
    return T.Compose([*steps, T.PILToTensor()])


def to_pil(image: Tensor) -> Image.Image:
    """A canonical [3, H, W] image in [0, 1] -> PIL RGB (exact for images decoded from 8-bit files)."""
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr))


def pil_views(
    images: Tensor, scales: Sequence[int], *, augment: bool = True, plus: bool = False, size: int | None = None
) -> list[Tensor]:
    """[HR, LR at each scale] built per sample as the original: each LR view is ``img.resize((s, s),
    LANCZOS)`` then the training transform; every view draws its own augmentation."""
    size = size or images.shape[-1]
    transform = original_transform(size, plus, augment)
    pils = [to_pil(img) for img in images]
    views = []
    for s in (None, *scales):
        batch = [transform(p if s is None else p.resize((s, s), Image.LANCZOS)) for p in pils]
        views.append(torch.stack(batch).float().div_(255.0).to(images.device))
    return views


def make_views(
    images: Tensor, scales: Sequence[int], *, lowres: str = "tensor", augment: bool = True, plus: bool = False
) -> list[Tensor]:
    """The training views of a canonical batch by the chosen path (see module doc)."""
    if check_lowres(lowres) == "pil":
        return pil_views(images, scales, augment=augment, plus=plus)
    return tensor_views(images, scales, augment=augment, plus=plus)
