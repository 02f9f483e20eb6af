"""Cut box regions out of images and resize them to ``size x size`` by area averaging, all boxes at once.

Area averaging is ``F.interpolate(mode="area")`` (adaptive average pooling, what the reference
implementation resizes MTCNN's 24/48 px patches with): output cell ``i`` of a region of ``n``
pixels averages pixels ``floor(i n / size)`` to ``ceil((i + 1) n / size) - 1``. Each cell's sum
comes from a summed-area table of its image in four lookups, so every box of every size is
resized in one vectorised gather instead of one interpolate call per box.

Regions are integer pixel ranges ``[x0, x1) x [y0, y1)``. Two border rules for regions that leave
the image: ``stretch`` (facenet-pytorch) clips the region to the image and stretches what is left;
``zero`` (the original MTCNN) keeps the region's shape and counts outside pixels as 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _edges(start: Tensor, length: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Pixel ranges [lo, hi) of each of ``size`` output cells, per region: ``[N, size]`` each."""
    i = torch.arange(size, dtype=torch.long)
    lo = (i[None] * length[:, None]) // size
    hi = -((-(i[None] + 1) * length[:, None]) // size)  # ceil division
    return start[:, None] + lo, start[:, None] + hi


def integral(image: Tensor) -> Tensor:
    """Summed-area table ``[C, H+1, W+1]`` (float64: exact for the sums of 8-bit pixels of any photo)."""
    c, h, w = image.shape
    table = torch.zeros(c, h + 1, w + 1, dtype=torch.float64, device=image.device)
    # both passes along the contiguous axis: torch's cumsum across rows is several times slower
    rows = image.to(torch.float64).cumsum(-1)
    table[:, 1:, 1:] = rows.transpose(-1, -2).contiguous().cumsum(-1).transpose(-1, -2)
    return table


class Integrals:
    """Summed-area tables of a batch of images ``[B, C, H, W]``, each made on first use and kept
    for the next stage (R-Net and O-Net read the same table)."""

    def __init__(self, images: Tensor):
        self.images = images
        self.shape = tuple(images.shape)
        self._tables: dict[int, Tensor] = {}

    def __getitem__(self, k: int) -> Tensor:
        if k not in self._tables:
            self._tables[k] = integral(self.images[k])
        return self._tables[k]


def resized_patches(
    images: Tensor | Integrals, image_index: Tensor, regions: Tensor, size: int, border: str = "stretch"
) -> Tensor:
    """Area-resized patches ``[N, C, size, size]`` (float32) of ``images`` ``[B, C, H, W]`` (or of
    their :class:`Integrals`, to reuse the tables across calls).

    ``regions`` is ``[N, 4]`` integer ``(x0, y0, x1, y1)`` (end exclusive) in image ``image_index[N]``.
    Regions that are empty after clipping give zero patches.
    """
    if border not in ("stretch", "zero"):
        raise ValueError(f"border must be 'stretch' or 'zero', got {border!r}")
    tables = images if isinstance(images, Integrals) else Integrals(images)
    b, c, h, w = tables.shape
    n = regions.shape[0]
    out = torch.zeros(n, c, size, size, dtype=torch.float32, device=tables.images.device)
    if n == 0:
        return out
    x0, y0, x1, y1 = regions.long().cpu().unbind(1)
    if border == "stretch":
        x0, y0 = x0.clamp(0, w), y0.clamp(0, h)
        x1, y1 = x1.clamp(0, w), y1.clamp(0, h)
    rlo, rhi = _edges(y0, (y1 - y0).clamp_min(0), size)
    clo, chi = _edges(x0, (x1 - x0).clamp_min(0), size)
    count = ((rhi - rlo)[:, :, None] * (chi - clo)[:, None, :]).to(torch.float64)  # full cell area
    # outside pixels (zero border) add nothing: clip the lookups, keep the full cell area
    rlo, rhi, clo, chi = rlo.clamp(0, h), rhi.clamp(0, h), clo.clamp(0, w), chi.clamp(0, w)
    valid = count > 0
    image_index = image_index.long().cpu()
    for k in torch.unique(image_index).tolist():  # one summed-area table per image, not per box
        sel = torch.nonzero(image_index == k, as_tuple=True)[0]
        table = tables[k]
        dev = table.device
        r0, r1 = rlo[sel][:, :, None].to(dev), rhi[sel][:, :, None].to(dev)
        c0, c1 = clo[sel][:, None, :].to(dev), chi[sel][:, None, :].to(dev)
        sums = table[:, r1, c1] - table[:, r0, c1] - table[:, r1, c0] + table[:, r0, c0]  # [C, n, S, S]
        mean = torch.where(valid[sel].to(dev), sums / count[sel].to(dev).clamp_min(1), 0.0)
        out[sel.to(out.device)] = mean.permute(1, 0, 2, 3).to(torch.float32)
    return out
