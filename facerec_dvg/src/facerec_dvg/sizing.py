"""Size helpers shared by the DVG and DVG-Face networks (smaller images and widths for CPU runs)."""

from __future__ import annotations

import math


def stages(image_size: int) -> int:
    """Number of x2 stages between a 4x4 map and ``image_size`` (8..128, powers of two)."""
    n = int(round(math.log2(image_size / 4)))
    if image_size < 8 or 4 * 2**n != image_size or n > 5:
        raise ValueError(f"image_size must be 8, 16, 32, 64 or 128, got {image_size}")
    return n


def scale(c: int, width: float) -> int:
    """Channel count ``c`` scaled by ``width`` (at least 2)."""
    return max(2, round(c * width))
