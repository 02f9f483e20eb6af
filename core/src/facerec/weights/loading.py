"""Strict loading into a model (every kind of key or shape mismatch on one line), safetensors writing
with metadata, and file hashes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import FacerecError, WeightsError
from .formats import format_of


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... (+{len(keys) - limit} more)" if len(keys) > limit else shown


def strict_load(model: nn.Module, state: Mapping[str, Any], source: str = "state dict") -> None:
    """``load_state_dict(strict=True)`` with a one-line WeightsError listing every kind of mismatch."""
    own = model.state_dict()
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected a state dict, got {type(state).__name__}")
    state = {k: (v if isinstance(v, Tensor) else torch.as_tensor(v)) for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_names(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch for {len(shapes)}: {_names(shapes, 3)}")
        raise WeightsError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {str(exc).splitlines()[0]}") from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights into ``model`` strictly: safetensors directly, any other file converted.

    Other files are read safely (see :func:`read_checkpoint`) and passed through
    ``type(model).convert_checkpoint`` (plugins override it for the papers' layouts).
    """
    path = Path(path)
    fmt = format_of(path)
    state = fmt.read(path)
    if not fmt.native:
        from ..api import unwrap_state_dict

        convert: Callable[[Any], Any] = getattr(type(model), "convert_checkpoint", None) or unwrap_state_dict
        try:
            state = convert(state)
        except FacerecError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"{path}: {type(model).__name__}.convert_checkpoint failed: {type(exc).__name__}: {exc}"
            ) from None
    strict_load(model, state, str(path))
    return model


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (``arch``, ``params``, ...)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from None


def save_weights(
    model: nn.Module | Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a state dict as safetensors atomically; metadata values are stored as strings (JSON for non-str)."""
    from ..fileio import save_safetensors_atomic

    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    # safetensors refuses shared storage: give every tensor its own contiguous copy
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {str(k): (v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in (metadata or {}).items()}
    return save_safetensors_atomic(state, path, meta)


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
