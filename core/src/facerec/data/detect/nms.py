"""Greedy non-maximum suppression, exact and vectorised, per group (image) of boxes.

Greedy NMS keeps a box unless a kept box of higher score overlaps it by more than the threshold.
Instead of a Python loop over boxes, the pairs that overlap too much are found in blocks (bounded
memory) and the keep mask is iterated to its fixed point ``keep[i] = not any(keep[j] and
overlap[j, i] > t for j ranked above i)``; every pass settles at least one more box in rank
order, and in practice the longest suppression chain takes a handful of passes.

Two overlap measures, as MTCNN uses them: ``union`` (IoU) and ``min`` (intersection over the smaller
area). ``plus_one`` counts box sides inclusively (``x2 - x1 + 1``, the Matlab/Caffe convention);
without it the sides are ``x2 - x1`` as in torchvision's ``nms``. Arithmetic is float32 like both
references, so borderline cases fall the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor

_BLOCK_ELEMENTS = 1 << 22  # pairs per block of the overlap matrix (16 MB of float32)


def _suppression_pairs(boxes: Tensor, threshold: float, mode: str, plus_one: bool) -> tuple[Tensor, Tensor]:
    """(higher, lower) rank pairs whose overlap exceeds ``threshold``; boxes sorted by descending score."""
    n = boxes.shape[0]
    one = 1.0 if plus_one else 0.0
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + one) * (y2 - y1 + one)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    src, dst = [], []
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        cols = slice(lo, n)  # only lower-ranked boxes can be suppressed by these rows
        w = (
            torch.minimum(x2[lo:hi, None], x2[None, cols]) - torch.maximum(x1[lo:hi, None], x1[None, cols]) + one
        ).clamp_min_(0)
        h = (
            torch.minimum(y2[lo:hi, None], y2[None, cols]) - torch.maximum(y1[lo:hi, None], y1[None, cols]) + one
        ).clamp_min_(0)
        inter = w * h
        if mode == "min":
            overlap = inter / torch.minimum(area[lo:hi, None], area[None, cols])
        else:
            overlap = inter / (area[lo:hi, None] + area[None, cols] - inter)
        rank_i = torch.arange(lo, hi)[:, None]
        rank_j = torch.arange(lo, n)[None, :]
        i, j = torch.nonzero((overlap > threshold) & (rank_j > rank_i), as_tuple=True)
        src.append(i + lo)
        dst.append(j + lo)
    return torch.cat(src), torch.cat(dst)


def _greedy(boxes: Tensor, threshold: float, mode: str, plus_one: bool) -> Tensor:
    n = boxes.shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    if n < 2:
        return keep
    src, dst = _suppression_pairs(boxes, threshold, mode, plus_one)
    if src.numel() == 0:
        return keep
    while True:
        hit = torch.zeros(n, dtype=torch.bool)
        hit[dst[keep[src]]] = True
        new = ~hit
        if torch.equal(new, keep):
            return keep
        keep = new


def nms(
    boxes: Tensor,
    scores: Tensor,
    threshold: float,
    groups: Tensor | None = None,
    *,
    mode: str = "union",
    plus_one: bool = False,
) -> Tensor:
    """Indices of the boxes ``[N, 4]`` (x1, y1, x2, y2) that greedy NMS keeps within each group,
    ordered by group and then by descending score (ties keep input order)."""
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    boxes = boxes.float().cpu()
    order = torch.argsort(scores.float().cpu(), descending=True, stable=True)
    if groups is not None:
        groups = groups.cpu()
        order = order[torch.argsort(groups[order], stable=True)]
        counts = torch.unique_consecutive(groups[order], return_counts=True)[1].tolist()
    else:
        counts = [n]
    ranked = boxes[order]
    keep = torch.empty(n, dtype=torch.bool)
    start = 0
    for count in counts:  # one pass per image, never per box
        keep[start : start + count] = _greedy(ranked[start : start + count], threshold, mode, plus_one)
        start += count
    return order[keep].to(scores.device)
