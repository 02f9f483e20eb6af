"""VirFace data: the meta-list dataset (``relative/path label``), MS1M-subset label remapping, the
repository's 150x150 crop (y offset +20) of 180x220 alignments, and the labelled + unlabelled batch merge
(B_l labelled then B_u unlabelled samples per batch, as ``BatchMergeDatasetSampler``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facerec.data.decode import decode_uint8
from facerec.data.formats import ImageList
from facerec.errors import DataError, ParameterError


def virface_crop(images: Tensor, size: int = 150, y_offset: int = 20) -> Tensor:
    """``CenterCropWithOffset(150, 150, 0, 20)`` without jitter on uint8 ``[..., H, W]`` images: the box
    x 15..165, y 55..205 of a 180x220 (W x H) alignment. Images smaller than the box are left as they are."""
    h, w = images.shape[-2:]
    if h < size + y_offset or w < size:
        return images
    top, left = int(round((h - size) / 2)) + y_offset, int(round((w - size) / 2))
    top = min(top, h - size)
    return images[..., top : top + size, left : left + size]


class VirFaceList(ImageList):
    """VirFace meta list (``relative/path label``); labels remapped to 0..n-1, or -1 for unlabelled lists.

    The MS1M-subset meta uses original MS1M class ids (123..85707, non-contiguous): ``remap`` (default on)
    maps the sorted distinct ids to 0..n-1 (``label_map`` keeps the mapping). ``unlabeled`` ignores the
    (dummy) label column. ``crop`` applies the repository's 150x150 crop of 180x220 alignments first.
    """

    paper = "VirFace (CVPR 2021) meta-list format"

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        unlabeled: bool = False,
        remap: bool = True,
        crop: bool = False,
        image_size: int | None = 112,
        skip_corrupt: bool = False,
    ):
        super().__init__(path, root=root, image_size=image_size, skip_corrupt=skip_corrupt)
        self.crop = bool(crop)
        self.label_map: dict[int, int] = {}
        if unlabeled:
            self._labels = np.full(len(self._labels), -1, dtype=np.int64)
            self.num_classes = 0
            return
        if (self._labels < 0).any():
            line = int(np.nonzero(self._labels < 0)[0][0])
            raise DataError(
                f"{self.list_path}: entry {line + 1} ({self.relpaths[line]!r}) has no label; "
                "pass unlabeled=True for an unlabelled list"
            )
        if remap:
            ids, new = np.unique(self._labels, return_inverse=True)
            self.label_map = {int(k): i for i, k in enumerate(ids)}
            self._labels = new.astype(np.int64)
        self.num_classes = int(self._labels.max()) + 1

    def _load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        u8 = decode_uint8(self.read_raw(index), self.describe_item(index))
        return (virface_crop(u8) if self.crop else u8), {}


class MergedBatches:
    """Callable ``i -> batch`` for the Trainer: B_l labelled samples followed by B_u unlabelled ones
    (label -1), each stream an endless sequence of its own per-epoch permutations, so the smaller set
    restarts when exhausted (as the original sampler) and any step can be fetched directly (exact resume)."""

    def __init__(self, labelled: Any, unlabelled: Any | None, b_l: int, b_u: int, seed: int = 0):
        from facerec.engine import StepIndices

        if b_l < 1:
            raise ParameterError(f"the labelled batch size must be >= 1, got {b_l}")
        if unlabelled is not None and b_u < 1:
            raise ParameterError(f"the unlabelled batch size must be >= 1, got {b_u}")
        self.labelled, self.unlabelled, self.b_l, self.b_u = labelled, unlabelled, b_l, b_u
        self.order_l = StepIndices(len(labelled), b_l, seed)
        self.order_u = StepIndices(len(unlabelled), b_u, seed + 7919) if unlabelled is not None else None

    @staticmethod
    def _fetch(dataset: Any, idx: Tensor) -> Mapping[str, Any]:
        return dataset.batch(idx.tolist())

    def epoch_batches(self) -> int:
        """Batches per epoch: max over the two sets of ceil(len / batch size)."""
        n = -(-len(self.labelled) // self.b_l)
        if self.unlabelled is not None:
            n = max(n, -(-len(self.unlabelled) // self.b_u))
        return n

    def __call__(self, i: int) -> dict[str, Tensor]:
        a = self._fetch(self.labelled, self.order_l(i))
        out = {"image": torch.as_tensor(a["image"]).float(), "label": torch.as_tensor(a["label"]).long()}
        if self.order_u is not None:
            b = self._fetch(self.unlabelled, self.order_u(i))
            out["image"] = torch.cat([out["image"], torch.as_tensor(b["image"]).float()])
            out["label"] = torch.cat([out["label"], torch.full((self.b_u,), -1, dtype=torch.long)])
        return out
