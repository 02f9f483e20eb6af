"""Reading the papers' original checkpoints safely and loading them strictly.

The original loaders filter keys and silently load nothing on a prefix mismatch; here every load is
strict and a mismatch is an error that lists the missing and unexpected keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from facerec.api import unwrap_state_dict
from facerec.errors import WeightsError
from torch import Tensor, nn


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with ``weights_only=True`` (never unpickle arbitrary objects); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {path}: {first}") from None


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(module: nn.Module, state: Mapping[str, Tensor], what: str = "checkpoint") -> None:
    """Load ``state`` into ``module``; any missing/unexpected key or shape mismatch is a WeightsError."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        raise WeightsError(f"{what} does not fit {type(module).__name__}: " + "; ".join(parts))
    bad = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise WeightsError(f"{what} does not fit {type(module).__name__}: shape mismatch {_describe(bad, 3)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def load_original(
    module: nn.Module,
    source: str | Path | Mapping[str, Any],
    convert: Callable[[Mapping[str, Any]], dict[str, Tensor]] | None = None,
) -> nn.Module:
    """Load an original-format checkpoint (path or already-read object) into ``module`` strictly.

    ``convert`` defaults to ``type(module).convert_checkpoint`` when the class has one, else
    unwrap ``state_dict`` + strip ``module.``.
    """
    what = str(source) if isinstance(source, (str, Path)) else "checkpoint"
    obj = read_checkpoint(source) if isinstance(source, (str, Path)) else source
    convert = convert or getattr(type(module), "convert_checkpoint", None) or unwrap_state_dict
    try:
        state = convert(obj)
    except (TypeError, KeyError, AttributeError) as exc:
        raise WeightsError(f"{what}: not a {type(module).__name__} checkpoint ({exc})") from None
    load_strict(module, state, what)
    return module
