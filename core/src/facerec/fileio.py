"""Atomic file writes: write to a temporary name in the same folder, then rename, so a crash or a
full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_safetensors_atomic(tensors: dict[str, Any], path: str | os.PathLike,
                            metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` to ``.NAME.tmpPID`` beside ``path``, then ``os.replace``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
