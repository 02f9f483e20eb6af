"""Where an output goes: the checks before any work, atomic file writes, the final rename into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...errors import DataError


#: written into every folder/list output: ``overwrite`` replaces only outputs that carry it (an LMDB
#: output is recognised by the ``__labels__`` key this writer adds)
MARKER = ".facerec-dataset.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def written_by_facerec(path: Path) -> bool:
    """Is ``path`` an output of this writer (a folder with its marker, or an LMDB with its labels key)?"""
    if path.is_dir() and (path / MARKER).is_file():
        return True
    if path.is_file() or (path.is_dir() and (path / "data.mdb").is_file()):
        from ..formats import LABELS_KEY, open_lmdb

        try:
            env = open_lmdb(path)
        except Exception:
            return False
        try:
            with env.begin() as txn:
                return txn.get(LABELS_KEY) is not None
        except Exception:
            return False
        finally:
            env.close()
    return False


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise DataError(f"output {out} already exists (pass overwrite / --overwrite)")
    if not written_by_facerec(out):
        raise DataError(
            f"output {out} exists and was not written by facerec (no {MARKER} marker): --overwrite "
            f"replaces only facerec's own outputs; delete it yourself or choose another output"
        )


def check_output(out: str | os.PathLike, overwrite: bool = False, option: str = "output") -> Path:
    """What :func:`write_dataset` checks before any work: ``out`` is new (or, with ``overwrite``, an
    output of this writer) and its folder exists and is writable (no regular file on the way)."""
    from ...outputs import check_writable_dir

    out = Path(out)
    _check_replaceable(out, overwrite)
    check_writable_dir(out.parent, option, given=out)
    if not out.parent.is_dir():
        raise DataError(f"{option} folder {out.parent} does not exist")
    return out


def _install(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temporary output into place (replacing ``out`` when asked and it is ours)."""
    if out.exists():
        _check_replaceable(out, overwrite)
        old = out.with_name(out.name + ".old")
        _clear(old)
        os.replace(out, old)
        os.replace(tmp, out)
        _clear(old)
    else:
        os.replace(tmp, out)
