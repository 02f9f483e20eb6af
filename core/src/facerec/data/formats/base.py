"""What every image dataset shares: decode, optional resize, skip-corrupt substitution, batched fetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...api import Dataset
from ...errors import DataError, ParameterError
from ..decode import decode_uint8, to_canonical


class _ImageDataset(Dataset):
    """Shared sample logic: decode, optional resize, skip-corrupt substitution, batched fetch."""

    image_size: int | None = None
    skip_corrupt: bool = False
    template: str | None = None

    def __init__(
        self,
        labels: np.ndarray,
        modality: np.ndarray | None,
        image_size: int | None,
        skip_corrupt: bool,
        template: str | None = None,
    ):
        if image_size is not None and int(image_size) <= 0:
            raise ParameterError(f"image_size must be positive, got {image_size}")
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ParameterError(f"template must name an alignment template, got {template!r}")
        self.template = template
        self._labels = np.asarray(labels, dtype=np.int64)
        self._modality = None if modality is None else np.asarray(modality, dtype=np.int64)
        self.image_size = None if image_size is None else int(image_size)
        self.skip_corrupt = bool(skip_corrupt)
        self.num_classes = int(self._labels.max()) + 1 if len(self._labels) and self._labels.max() >= 0 else 0
        self.skipped: set[int] = set()  # indices found corrupt in this process

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> Tensor:
        return torch.from_numpy(self._labels.copy())

    @property
    def modality(self) -> Tensor | None:
        return None if self._modality is None else torch.from_numpy(self._modality.copy())

    # -- subclasses provide these ---------------------------------------------------------------
    def read_raw(self, index: int) -> bytes:
        """The stored image bytes of sample ``index`` (no decoding)."""
        raise NotImplementedError

    def describe_item(self, index: int) -> str:
        """How an error message names sample ``index`` (its path or LMDB key)."""
        raise NotImplementedError

    def _load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """Decoded uint8 image of sample ``index`` and its extra fields (e.g. ``feature``)."""
        return decode_uint8(self.read_raw(index), self.describe_item(index)), {}

    # -- samples --------------------------------------------------------------------------------
    def _resolve(self, index: int) -> tuple[int, Tensor, dict[str, Any]]:
        """Decode ``index``, or with ``skip_corrupt`` the next decodable sample."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        index %= n
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                return (i, *self._load(i))
            except DataError:
                if not self.skip_corrupt:
                    raise
                self.skipped.add(i)
        raise DataError(f"every sample of {self!r} is corrupt")

    def _item(self, i: int, image: Tensor, extras: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"image": image, "label": int(self._labels[i])}
        if self._modality is not None:
            item["modality"] = int(self._modality[i])
        item.update(extras)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, u8, extras = self._resolve(int(index))
        return self._item(i, to_canonical(u8, self.image_size), extras)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Decode many samples and convert them to float in one batched op (``image`` is ``[B,3,H,W]``
        in channels-last memory when the images share a size)."""
        from torch.utils.data import default_collate

        resolved = [self._resolve(int(i)) for i in indices]
        shapes = {tuple(u8.shape) for _, u8, _ in resolved}
        if len(shapes) == 1:
            # Decoders hand out [3,H,W] views of interleaved HWC pixels: stacking them as HWC is one
            # memcpy each, where stacking as CHW is a stride-3 gather that costs more than the float
            # conversion. The batch stays channels-last ([B,3,H,W] with NHWC strides), the layout
            # facerec's inference and oneDNN convolutions run in anyway.
            hwc = torch.stack([u8.permute(1, 2, 0) for _, u8, _ in resolved])
            images = to_canonical(hwc.permute(0, 3, 1, 2), self.image_size)
        elif self.image_size is not None:
            images = torch.stack([to_canonical(u8, self.image_size) for _, u8, _ in resolved])
        else:
            raise DataError(f"images of different sizes {sorted(shapes)[:2]} in one batch; pass image_size")
        out = default_collate([self._item(i, torch.empty(0), extras) for i, _, extras in resolved])
        out["image"] = images
        return out
