"""Labelled sample grids as PNG (PIL): for `facerun data show`, run directories and eyeballing data."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..errors import DataError, ParameterError

_TEXT_H = 12  # pixels per caption line under a tile


def save_grid(
    images: Tensor,
    path: str | os.PathLike,
    labels: Sequence | Tensor | None = None,
    captions: Sequence[str] | None = None,
    ncol: int = 8,
    pad: int = 2,
) -> Path:
    """Write ``images`` ``[N, 3 or 1, H, W]`` (float in [0, 1]) as a PNG grid of ``ncol`` columns.

    ``labels`` (one per image) are drawn under each tile as ``id <label>``; ``captions`` (one string
    per image) add a second line. The file is written to a temporary name and renamed, so a reader
    never sees half a PNG. Returns the path.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ParameterError(f"save_grid: images must be a [N, 3, H, W] tensor, got {shape}")
    n, _, h, w = images.shape
    if n == 0:
        raise ParameterError("save_grid: no images to draw")
    for name, seq in (("labels", labels), ("captions", captions)):
        if seq is not None and len(seq) != n:
            raise ParameterError(f"save_grid: {len(seq)} {name} for {n} images")
    if ncol < 1:
        raise ParameterError(f"save_grid: ncol must be >= 1, got {ncol}")
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    lines = int(labels is not None) + int(captions is not None)
    cell_h = h + lines * _TEXT_H + pad
    canvas = np.full((nrow * cell_h + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    tiles = (images.detach().float().clamp(0, 1).expand(-1, 3, -1, -1) * 255 + 0.5).to(torch.uint8)
    pixels = tiles.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):  # one paste per tile (not per pixel)
        r, c = divmod(i, ncol)
        y0, x0 = pad + r * cell_h, pad + c * (w + pad)
        canvas[y0 : y0 + h, x0 : x0 + w] = pixels[i]
    img = Image.fromarray(canvas)
    if lines:
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default()
        for i in range(n):
            r, c = divmod(i, ncol)
            y, x0 = pad + r * cell_h + h, pad + c * (w + pad)
            texts = []
            if labels is not None:
                lab = labels[i]
                texts.append(f"id {int(lab) if isinstance(lab, (int, Tensor, np.integer)) else lab}")
            if captions is not None:
                texts.append(str(captions[i]))
            for k, t in enumerate(texts):
                draw.text((x0 + 1, y + k * _TEXT_H), t[: max(1, w // 6)], fill=(0, 0, 0), font=font)
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"save_grid: output folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = ["save_grid"]
