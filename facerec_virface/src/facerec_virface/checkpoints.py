"""VirFace training checkpoints: ``{'epoch', 'backbone', 'head'[, 'generator']}`` saved with torch.save.

DataParallel runs prefix backbone and generator keys with ``module.`` (never the head). The original loaded
by key intersection, so a prefix mismatch silently loaded nothing; here every part is unwrapped and then
loaded strictly (``facerec.load_weights``), so a wrong file fails with the keys that differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from facerec.errors import WeightsError

PARTS = ("backbone", "head", "generator")


def convert_part(checkpoint: Mapping[str, Any], part: str) -> dict[str, Tensor]:
    """The ``part`` entry of a VirFace checkpoint (or a bare state dict) with ``module.`` stripped."""
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"VirFace checkpoint must be a dict, got {type(checkpoint).__name__}")
    if part in checkpoint:
        state = checkpoint[part]
    elif any(p in checkpoint for p in PARTS):
        have = ", ".join(p for p in PARTS if p in checkpoint)
        hint = " (only the generator and virface stages save one)" if part == "generator" else ""
        raise WeightsError(f"VirFace checkpoint has no {part!r} entry{hint}; it holds: {have}")
    else:
        state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise WeightsError(f"VirFace checkpoint entry {part!r} is not a state dict")
    out = {}
    for name, value in state.items():
        name = str(name)
        while name.startswith("module."):
            name = name[len("module.") :]
        if not isinstance(value, Tensor):
            try:
                value = torch.as_tensor(value)
            except Exception:
                raise WeightsError(f"checkpoint entry {part}.{name} is not a tensor") from None
        if name.endswith("num_batches_tracked") and value.numel() == 1:
            value = value.reshape(())  # a 1-element counter saved as [1] is the same counter
        out[name] = value
    return out


def save_checkpoint(path, *, epoch: int, backbone, head, generator=None) -> None:
    """Write the original layout (torch.save of plain state dicts), to a temporary name then renamed."""
    import os
    from pathlib import Path

    path = Path(path)
    obj = {"epoch": epoch, "backbone": backbone.state_dict(), "head": head.state_dict()}
    if generator is not None:
        obj["generator"] = generator.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_parts(path, *, backbone, head, generator=None, stage: str = "") -> None:
    """One safetensors file with ``backbone.*``, ``head.*`` and optionally ``generator.*`` tensors."""
    from facerec.weights import save_weights

    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    if generator is not None:
        state.update({f"generator.{k}": v for k, v in generator.state_dict().items()})
    save_weights(state, path, {"format": "facerec-virface-stage/1", "stage": stage})


def read_parts(path) -> dict[str, dict[str, Tensor]]:
    """A stage file (safetensors, ``part.key``) or an original VirFace checkpoint -> ``{part: state}``."""
    from pathlib import Path

    from facerec.weights import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    obj = read_checkpoint(path)
    if path.name.endswith(".safetensors"):
        parts: dict[str, dict[str, Tensor]] = {}
        for key, value in obj.items():
            part, dot, rest = key.partition(".")
            if not dot or part not in PARTS:
                raise WeightsError(f"{path}: key {key!r} is not backbone.*, head.* or generator.*")
            parts.setdefault(part, {})[rest] = value
        return parts
    if not isinstance(obj, Mapping) or not any(p in obj for p in PARTS):
        raise WeightsError(f"{path}: not a VirFace checkpoint (no 'backbone', 'head' or 'generator' entry)")
    return {p: convert_part(obj, p) for p in PARTS if p in obj}


def load_parts(path, *, backbone=None, head=None, generator=None, optional_generator: bool = False) -> set[str]:
    """Load the parts of a checkpoint strictly into the given modules; returns the parts loaded."""
    from facerec.weights import strict_load

    parts = read_parts(path)
    done = set()
    for name, module in (("backbone", backbone), ("head", head), ("generator", generator)):
        if module is None:
            continue
        if name not in parts:
            if name == "generator" and optional_generator:
                continue
            raise WeightsError(f"{path}: checkpoint has no {name!r} entry; it holds {', '.join(parts) or 'nothing'}")
        strict_load(module, parts[name], f"{path} [{name}]")
        done.add(name)
    return done
