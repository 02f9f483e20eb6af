"""Atomic file writes: write to a temporary name in the same folder, then rename, so a crash or a
full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def save_safetensors_atomic(
    tensors: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
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


_TMP = re.compile(r"^\..+\.tmp(\d+)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.tmpPID`` files of :func:`save_safetensors_atomic` (and the run directory's
    writes) left in ``folder`` by a process that no longer runs (killed mid-write); returns them."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if m and entry.is_file() and not _alive(int(m.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed
