"""Multi-scale low-resolution synthesis: downsample to s x s pixels and back up to the input size.

* :func:`lowres_batch` is the fast path: one batched tensor op per scale, on any device.
* :func:`pil_lowres` is the original's exact path for parity: PIL Lanczos down to s x s
  (``Image.ANTIALIAS``), then torchvision's ``Resize(size)`` on a PIL image = PIL bilinear up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def degrade(images: Tensor, scale: int, size: tuple[int, int] | None = None) -> Tensor:
    """Canonical images [B,3,H,W] in [0,1] -> the same images at ``scale`` px, resized back to ``size``."""
    size = tuple(images.shape[-2:]) if size is None else size
    x = images.float()
    # bicubic with antialias is the closest batched kernel to PIL's Lanczos downsampling
    small = F.interpolate(x, size=(scale, scale), mode="bicubic", align_corners=False, antialias=True)
    up = F.interpolate(small.clamp(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True)
    return up.clamp_(0, 1)


def lowres_batch(images: Tensor, scales: Sequence[int], size: tuple[int, int] | None = None) -> Tensor:
    """Every scale of a batch at once: returns [len(scales), B, 3, H, W]."""
    return torch.stack([degrade(images, s, size) for s in scales])


def _torchvision_resize_pil(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size)`` with an int on a PIL image: shorter side -> size, PIL bilinear."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize(new, Image.BILINEAR)


def pil_lowres(img: Image.Image, scale: int, size: int = 120) -> Image.Image:
    """The original's LR image: ``img.resize((s, s), LANCZOS)`` then ``Resize(size)`` (bilinear)."""
    return _torchvision_resize_pil(img.convert("RGB").resize((scale, scale), Image.LANCZOS), size)


def pil_to_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> canonical float [3,H,W] in [0,1] (what ``ToTensor`` gives)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def pil_multiscale(img: Image.Image, scales: Sequence[int], size: int = 120) -> dict[str, Tensor]:
    """The original's evaluation item: ``{'0': HR, '1': scale_1, ...}`` as canonical tensors."""
    out = {"0": pil_to_tensor(_torchvision_resize_pil(img.convert("RGB"), size))}
    for k, s in enumerate(scales, start=1):
        out[str(k)] = pil_to_tensor(pil_lowres(img, s, size))
    return out
