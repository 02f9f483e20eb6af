"""A dataset kept in memory after the first fetch of each sample, for the small rendered or decoded sets
recipes draw from many times (every epoch, every stage, every arm of a comparison)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ..api import Dataset

STORAGE = ("float16", "uint8")


class CachedDataset(Dataset):
    """Every sample a dataset's ``batch(indices)`` produced, kept: images and every other per-sample tensor
    (label, modality, ...); names and paths are not kept.

    ``storage="float16"`` keeps images as float16 and returns that value as float32, so a cached sample and
    a fresh one are identical; ``"uint8"`` keeps images in [0, 1] as ``round(x * 255)`` (half the memory
    again; 8-bit sources lose nothing). ``fill=True`` fetches everything now in chunks of ``chunk``;
    otherwise each sample is fetched on its first request.
    """

    def __init__(self, inner: Any, *, storage: str = "float16", fill: bool = False, chunk: int = 256):
        if storage not in STORAGE:
            raise ValueError(f"CachedDataset storage must be one of {', '.join(STORAGE)}, got {storage!r}")
        self.inner, self.storage = inner, storage
        self.num_classes = int(getattr(inner, "num_classes", 0) or 0)
        self._have = torch.zeros(len(inner), dtype=torch.bool)
        self._store: dict[str, Tensor] = {}
        if fill:
            for start in range(0, len(inner), chunk):
                self.batch(range(start, min(start + chunk, len(inner))))
            if not self.num_classes and "label" in self._store and len(self):  # a set that does not count them
                self.num_classes = max(0, int(self._store["label"].max()) + 1)

    def __len__(self) -> int:
        return len(self._have)

    @property
    def _complete(self) -> bool:
        return bool(self._have.all())

    @property
    def labels(self) -> Tensor:
        if self._complete and "label" in self._store:
            return self._store["label"]
        return self.inner.labels

    @property
    def modality(self) -> Tensor | None:
        """Every sample's modality (0 = VIS, 1 = NIR) where known, else None."""
        if self._complete and "modality" in self._store:
            return self._store["modality"]
        inner = getattr(self.inner, "modality", None)
        return inner if isinstance(inner, Tensor) else None

    def _keep(self, indices: Tensor, fresh: dict[str, Any]) -> None:
        for key, value in fresh.items():
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError):
                continue  # names, paths: not per-sample numbers
            if value.dim() == 0 or len(value) != len(indices):
                continue
            if key == "image":
                value = (
                    (value.float().clamp(0, 1) * 255).round().to(torch.uint8)
                    if self.storage == "uint8"
                    else value.to(torch.float16)
                )
            elif key == "label":
                value = value.long()
            if key not in self._store:
                shape, fill = (len(self), *value.shape[1:]), -1 if key == "label" else 0
                self._store[key] = torch.full(shape, fill, dtype=value.dtype)
            self._store[key][indices] = value
        self._have[indices] = True

    def _out(self, key: str, value: Tensor) -> Tensor:
        if key != "image":
            return value
        return value.float() / 255 if self.storage == "uint8" else value.float()

    def batch(self, indices: Iterable[int]) -> dict[str, Any]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        missing = idx[~self._have[idx]].unique()
        if len(missing):
            self._keep(missing, self.inner.batch(missing.tolist()))
        return {key: self._out(key, value[idx]) for key, value in self._store.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.batch([int(index)])
        return {k: (v[0] if k in ("image", "feature") or v[0].dim() else v[0].item()) for k, v in item.items()}


def maybe_cache(dataset: Any, budget_mb: float = 512.0) -> Any:
    """Wrap a fast-batch image dataset in :class:`CachedDataset` (float16) when all of it fits in ``budget_mb``."""
    from ..engine.classifier import has_fast_batch

    if not has_fast_batch(dataset) or not len(dataset):
        return dataset
    probe = dataset.batch([0]).get("image")
    if probe is None:
        return dataset
    need = len(dataset) * probe[0].numel() * 2 / 2**20
    return CachedDataset(dataset) if need <= budget_mb else dataset


__all__ = ["CachedDataset", "STORAGE", "maybe_cache"]
