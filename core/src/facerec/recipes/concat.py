"""Real and generated training data as one labelled dataset (the standard recipe's generator arm)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import FacerecError


class LabelledConcat:
    """Two labelled datasets as one: the second's labels are shifted past the first's classes and its
    images resized to the first's size (once, vectorised). Keeps the fast ``batch(indices)`` path."""

    def __init__(self, first: Any, second: Any):
        import torch
        import torch.nn.functional as F

        self.first, self.second = first, second
        self.offset = int(first.num_classes)
        self.num_classes = self.offset + int(second.num_classes)
        probe = first.batch([0])["image"]
        self.size = tuple(probe.shape[-2:])
        data = second.data if getattr(second, "key", "image") == "image" else None
        if data is None:
            raise FacerecError("the standard recipe mixes in generated IMAGES; this generator yields features")
        if tuple(data.shape[-2:]) != self.size:
            data = F.interpolate(data.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        self.images = data.float().clamp(0, 1)
        self.labels2 = second.labels.long() + self.offset
        self._torch = torch

    def __len__(self) -> int:
        return len(self.first) + len(self.labels2)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        torch = self._torch
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        n1 = len(self.first)
        a, b = idx[idx < n1], idx[idx >= n1] - n1
        parts_img, parts_lab = [], []
        if len(a):
            got = self.first.batch(a.tolist())
            parts_img.append(got["image"].float())
            parts_lab.append(torch.as_tensor(got["label"]).long())
        if len(b):
            parts_img.append(self.images[b])
            parts_lab.append(self.labels2[b])
        images, labels = torch.cat(parts_img), torch.cat(parts_lab)
        order = torch.cat([torch.nonzero(idx < n1).squeeze(1), torch.nonzero(idx >= n1).squeeze(1)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return {"image": images[inverse], "label": labels[inverse]}


__all__ = ["LabelledConcat"]
