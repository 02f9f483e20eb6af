"""Which format a path on disk holds, and :func:`open_dataset` for any of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...api import Dataset
from ...errors import DataError, ParameterError
from .lists import ImageFolder, ImageList
from .lmdb_dataset import LMDBDataset


def detect_format(path: str | os.PathLike) -> str:
    """'lmdb', 'rec', 'folder' or 'list' for an existing path (by content, not by name alone)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"no such file or directory: {p}")
    if p.is_dir():
        if (p / "data.mdb").is_file():
            return "lmdb"
        return "rec" if (p / "train.rec").is_file() else "folder"  # an insightface dataset folder
    with p.open("rb") as f:
        head = f.read(4096)
    if head[:4] == b"\x0a\x23\xd7\xce":  # MXNet RecordIO record magic 0xCED7230A (little endian)
        return "rec"
    # LMDB data files start with a meta page holding the magic 0xBEEFC0DE (little endian).
    if b"\xde\xc0\xef\xbe" in head[:64] or p.suffix in {".lmdb", ".mdb"}:
        return "lmdb"
    if b"\x00" in head:
        raise DataError(f"{p}: neither an image list (text), an image folder nor an LMDB")
    return "list"


def open_dataset(path: str | os.PathLike, **params: Any) -> Dataset:
    """Open a dataset on disk in whichever format it is (image list, image folder, LMDB, RecordIO)."""
    fmt = detect_format(path)
    if fmt == "rec":
        from ..recordio_dataset import RecordIODataset

        cls: Any = RecordIODataset
    else:
        cls = {"lmdb": LMDBDataset, "folder": ImageFolder, "list": ImageList}[fmt]
    import inspect

    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        shown = accepted - {"path", "root"} | ({"root"} if fmt == "list" else set())
        raise ParameterError(
            f"{fmt} dataset {path} has no parameter {unknown[0]!r}; accepted: {', '.join(sorted(shown))}"
        )
    return cls(path, **params)
