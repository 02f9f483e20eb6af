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
            name = name[len("module."):]
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
