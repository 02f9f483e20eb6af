"""DCR-style resolution degradation: antialiased downsampling to s x s pixels and back to the input size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ParameterError


def degrade(images: Tensor, pixels: int | Sequence[int] | Tensor) -> Tensor:
    """Low-resolution versions of canonical images ``[B, 3, H, W]``, returned at the same size.

    ``pixels`` is one side length (8, 12, 16, 20 in DCR) or one per item. Downsampling is antialiased
    bicubic (like PIL's resize of the original code), upsampling bicubic; values are clamped to [0, 1].
    """
    if images.dim() != 4:
        raise ParameterError(f"degrade: images must be [B, C, H, W], got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    px = torch.as_tensor(pixels).long()
    if px.dim() == 0:
        px = px.expand(images.shape[0])
    if len(px) != images.shape[0]:
        raise ParameterError(f"degrade: {len(px)} resolutions for {images.shape[0]} images")
    if len(px) and (int(px.min()) < 2 or int(px.max()) > min(h, w)):
        raise ParameterError(f"degrade: resolutions must be between 2 and {min(h, w)} pixels, got {px.tolist()}")
    out = torch.empty_like(images, dtype=torch.float32)
    for r in torch.unique(px).tolist():  # one resize per distinct resolution, not per image
        sel = (px == r).nonzero().view(-1)
        small = F.interpolate(images[sel].float(), size=(r, r), mode="bicubic", align_corners=False, antialias=True)
        out[sel] = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)
    return out
