"""Reading a Dataset in chunks as the records the writers store (stored bytes copied, else encoded)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from ...api import Dataset
from ...errors import DataError
from ..decode import JPEG_MAGIC, decode_uint8, encode_jpeg


class _Source:
    """Fetches samples in chunks as (index, image bytes, label, modality, feature npy bytes | None)."""

    def __init__(self, dataset: Dataset, jpeg_only: bool, quality: int, skip_corrupt: bool, image_size: int | None):
        self.ds = dataset
        self.jpeg_only = jpeg_only
        self.quality = quality
        self.skip_corrupt = skip_corrupt
        self.image_size = image_size
        # Stored bytes can be copied only when no resize was asked for (by us or the dataset) and
        # the sample is the stored image (a subclass overriding ``_load``, e.g. to crop, is not).
        from ..formats import LMDBDataset
        from ..formats.base import _ImageDataset

        self.raw = (
            isinstance(dataset, _ImageDataset)
            and image_size is None
            and dataset.image_size is None
            and type(dataset)._load in (_ImageDataset._load, LMDBDataset._load)
        )
        self.has_features = bool(getattr(dataset, "has_features", False))
        self.skipped: list[int] = []

    def _encode(self, image: torch.Tensor) -> bytes:
        if self.image_size is not None:
            from ..decode import to_canonical

            image = to_canonical((image * 255).round().to(torch.uint8), self.image_size)
        return encode_jpeg(image, self.quality)

    def _from_item(self, i: int, item: dict[str, Any]) -> tuple:
        image = item.get("image")
        if image is None:
            raise DataError(f"sample {i} has no image (feature datasets cannot be written as images)")
        feature = item.get("feature")
        npy = None
        if feature is not None:
            buf = io.BytesIO()
            np.save(buf, torch.as_tensor(feature).detach().cpu().float().numpy(), allow_pickle=False)
            npy = buf.getvalue()
        modality = int(item["modality"]) if "modality" in item else -1
        return (i, self._encode(image), int(item.get("label", -1)), modality, npy)

    def _raw_one(self, i: int) -> tuple:
        from ..formats import LMDBDataset

        ds: Any = self.ds
        if isinstance(ds, LMDBDataset):  # one record read for image and feature
            data, npy, _ = ds._record_parts(i)
            npy = npy if self.has_features else None
        else:
            data, npy = ds.read_raw(i), None
        u8 = decode_uint8(data, ds.describe_item(i))  # validates the bytes (corrupt files are caught here)
        if self.jpeg_only and not data.startswith(JPEG_MAGIC):
            data = encode_jpeg(u8, self.quality)
        label = int(ds._labels[i])
        modality = int(ds._modality[i]) if ds._modality is not None else -1
        return (i, data, label, modality, npy)

    def fetch(self, indices: range) -> list[tuple]:
        if self.raw:
            out = []
            for i in indices:
                try:
                    out.append(self._raw_one(i))
                except DataError:
                    if not self.skip_corrupt:
                        raise
                    self.skipped.append(i)
            return out
        batch_fn = getattr(type(self.ds), "batch", None)
        if batch_fn is not None and batch_fn is not Dataset.batch:
            try:
                b = self.ds.batch(list(indices))
                return [self._from_item(i, {k: v[j] for k, v in b.items()}) for j, i in enumerate(indices)]
            except DataError:
                if not self.skip_corrupt:
                    raise  # fall through to per-item fetching to find and skip the bad ones
        out = []
        for i in indices:
            try:
                out.append(self._from_item(i, self.ds[i]))
            except DataError:
                if not self.skip_corrupt:
                    raise
                self.skipped.append(i)
        return out


def _job(dataset: Dataset, fmt: str, source: str, quality: int, image_size: int | None) -> dict[str, Any]:
    return {
        "format": fmt,
        "length": len(dataset),
        "source": source,
        "quality": quality,
        "image_size": image_size,
        "dataset": type(dataset).__name__,
    }
