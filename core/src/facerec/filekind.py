"""What a file is, from its first bytes, and why a safe read of it failed, in words a user can act on.

Shared by every safe loader (weights, masks, insightface ``.bin`` pairs): a ``.safetensors`` file
given where a pickle or ``.npy`` is expected is named as safetensors, a file cut short is named as
truncated, and a pickle that references code is "refused by the safe loader" with the global it
wanted. Nothing here unpickles anything.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from pathlib import Path

#: first bytes of a legacy (non-zip) ``torch.save`` file: protocol 2, then its LONG1 magic number
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_MAX_HEADER = 100_000_000  # safetensors' own limit on its JSON header
_GLOBAL = re.compile(r"(?:GLOBAL|global|unpickle)\s+([\w.]+\.[\w]+)")


def kind(path: str | os.PathLike) -> str:
    """``safetensors``, ``zip`` (torch's current format, .npz), ``torch-legacy``, ``pickle``, ``npy``,
    ``empty`` or ``unknown``."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError:
        return "unknown"
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= n <= _MAX_HEADER:  # a JSON header (the file may be cut short)
            return "safetensors"
    return "unknown"


def truncated(path: str | os.PathLike, exc: BaseException | None = None) -> bool:
    """Does the file look cut short (from its own structure, or the error reading it gave)?"""
    p = Path(path)
    text = f"{type(exc).__name__}: {exc}".lower() if exc is not None else ""
    if isinstance(exc, EOFError) or any(
        w in text for w in ("truncated", "unexpected eof", "ran out of input", "central directory", "incomplete")
    ):
        return True
    k = kind(p)
    try:
        size = p.stat().st_size
    except OSError:
        return False
    if k == "zip":
        return not zipfile.is_zipfile(p)  # the end-of-archive record is missing
    if k == "safetensors":
        with p.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        return n + 8 > size
    return False


def refused_global(exc: BaseException) -> str | None:
    """The ``module.name`` a safe unpickler refused, read from its error, if that is why it failed."""
    text = str(exc)
    if not any(w in text for w in ("GLOBAL", "not allowed", "refus", "blocked")):
        return None
    m = _GLOBAL.search(text)
    return m.group(1) if m else "a non-data object"


def read_failure(
    path: str | os.PathLike, exc: BaseException | None, expected: str, *, safetensors_hint: str = ""
) -> str | None:
    """One line saying why ``path`` could not be read as ``expected`` (e.g. "a pickled checkpoint"),
    when the reason is one of the named ones: safetensors in the wrong place, truncated, refused."""
    p = Path(path)
    k = kind(p)
    if k == "safetensors" and "safetensors" not in expected:
        return f"{p}: is a safetensors file, not {expected}" + (f" ({safetensors_hint})" if safetensors_hint else "")
    if k == "empty":
        return f"{p}: the file is empty"
    if truncated(p, exc):
        return f"{p}: the file is truncated ({p.stat().st_size} bytes; copy or download it again)"
    if exc is not None:
        name = refused_global(exc)
        if name is not None:
            return (
                f"{p}: refused by the safe loader: it references {name}, which is not a tensor, array or "
                f"plain container (nothing in it was run)"
            )
    return None


__all__ = ["TORCH_LEGACY_MAGIC", "kind", "read_failure", "refused_global", "truncated"]
