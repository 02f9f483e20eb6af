"""Precomputed feature files and tables: what ``facerun extract`` writes and protocols score.

A feature file (safetensors) holds one tensor ``embeddings`` [N, D] (float32), optional ``labels`` [N], and
in its metadata ``keys`` (a JSON list of the items' paths relative to the data root, with ``/`` separators)
plus free-form provenance. All its names are importable from facerec.protocols.common too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

#: how many missing items an error message names
MAX_LISTED = 5


class FeatureTable(Mapping[str, Tensor]):
    """Embeddings keyed by item path (relative to the data root); fast bulk lookup by key."""

    def __init__(
        self,
        keys: Sequence[str],
        embeddings: Tensor,
        labels: Tensor | None = None,
        meta: Mapping[str, str] | None = None,
    ):
        if len(keys) != len(embeddings):
            raise DataError(f"feature table has {len(keys)} keys but {len(embeddings)} embeddings")
        self.keys_list = [k.replace("\\", "/") for k in keys]
        self.embeddings = embeddings
        self.labels = labels
        self.meta = dict(meta or {})
        self.index = {k: i for i, k in enumerate(self.keys_list)}
        # also findable without extension (features of a.jpg serve a list naming a.png)
        self.stems = {os.path.splitext(k)[0]: i for i, k in enumerate(self.keys_list)}

    def __getitem__(self, key: str) -> Tensor:
        i = self.find(key)
        if i is None:
            raise KeyError(key)
        return self.embeddings[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_list)

    def __len__(self) -> int:
        return len(self.keys_list)

    def find(self, key: str) -> int | None:
        key = key.replace("\\", "/")
        key = key[2:] if key.startswith("./") else key
        i = self.index.get(key)
        return i if i is not None else self.stems.get(os.path.splitext(key)[0])

    def rows(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row index per key, -1 where absent) and the boolean 'present' mask."""
        idx = np.array([-1 if (i := self.find(k)) is None else i for k in keys], dtype=np.int64)
        return idx, idx >= 0

    @classmethod
    def from_mapping(cls, features: Mapping[str, Tensor]) -> FeatureTable:
        if isinstance(features, FeatureTable):
            return features
        keys = list(features)
        emb = torch.stack([torch.as_tensor(features[k]).float() for k in keys]) if keys else torch.empty(0, 0)
        return cls(keys, emb)

    def save(self, path: str | Path) -> Path:
        return save_features(path, self.keys_list, self.embeddings, self.labels, self.meta)


def save_features(
    path: str | Path,
    keys: Sequence[str],
    embeddings: Tensor,
    labels: Tensor | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a feature file atomically (temporary name, then rename)."""
    from ..fileio import save_safetensors_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"embeddings": embeddings.float().contiguous().cpu()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(labels).long().contiguous().cpu()
    metadata = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (meta or {}).items()}
    metadata["keys"] = json.dumps([k.replace("\\", "/") for k in keys])
    return save_safetensors_atomic(tensors, path, metadata)


def load_features(path: str | Path) -> FeatureTable:
    """Read a feature file written by ``facerun extract`` (clear errors for anything else)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            if "embeddings" not in names:
                raise DataError(f"{path} has no 'embeddings' tensor (found: {', '.join(sorted(names)) or 'none'})")
            emb = f.get_tensor("embeddings")
            labels = f.get_tensor("labels") if "labels" in names else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable safetensors feature file: {str(exc).splitlines()[0]}") from None
    if "keys" not in meta:
        raise DataError(f"{path} has no 'keys' metadata (write it with facerun extract)")
    try:
        keys = json.loads(meta.pop("keys"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: the 'keys' metadata is not a JSON list") from None
    if emb.dim() != 2 or len(keys) != emb.shape[0]:
        raise DataError(f"{path}: {len(keys)} keys for embeddings of shape {tuple(emb.shape)}")
    return FeatureTable(keys, emb.float(), labels, meta)


def gather_features(
    features: Mapping[str, Tensor], keys: Sequence[str], *, skip_missing: bool, source: str = "features"
) -> tuple[Tensor, np.ndarray]:
    """Rows for ``keys`` from precomputed features; missing keys are an error unless skipped."""
    table = FeatureTable.from_mapping(features)
    idx, present = table.rows(keys)
    if not present.all() and not skip_missing:
        miss = [keys[i] for i in np.flatnonzero(~present)[:MAX_LISTED]]
        n = int((~present).sum())
        raise DataError(
            f"{n} of {len(keys)} items have no feature in {source}: {', '.join(miss)}"
            + (" ..." if n > MAX_LISTED else "")
            + "; pass skip_missing=True (--skip-missing)"
        )
    out = torch.zeros(len(keys), table.embeddings.shape[1] if table.embeddings.dim() == 2 else 0)
    if present.any():
        out[torch.from_numpy(present)] = table.embeddings[torch.from_numpy(idx[present])].float()
    return out, present
