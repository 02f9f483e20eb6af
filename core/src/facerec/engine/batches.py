"""Nested batches (tensors in dicts, lists and tuples): move to a device, take rows, count samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def slice_batch(batch: Any, part: slice) -> Any:
    """Take rows ``part`` of every tensor (and list) of a batch."""
    if isinstance(batch, Tensor):
        return batch[part]
    if isinstance(batch, Mapping):
        return {k: slice_batch(v, part) for k, v in batch.items()}
    if isinstance(batch, list):
        return batch[part]
    if isinstance(batch, tuple):
        return tuple(slice_batch(v, part) for v in batch)
    return batch


def batch_length(batch: Any) -> int:
    """Number of samples in a batch: the leading size of its first tensor."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = batch_length(item)
            if n:
                return n
    return 0
