"""Writing a whole Dataset (:func:`write_dataset`) or a producer's chunks (:class:`ChunkedOutput`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ...api import Dataset
from ...errors import DataError, ParameterError
from .files import _FilesWriter
from .lmdb_writer import _LMDBWriter
from .output import _clear, _install, check_output
from .source import _job, _Source


FORMATS = ("folder", "list", "lmdb", "rec")


@attrs.frozen
class WriteResult:
    """What a write produced."""

    path: Path
    format: str
    written: int
    skipped: int
    resumed_from: int
    num_classes: int


def write_dataset(
    dataset: Dataset,
    out: str | os.PathLike,
    fmt: str,
    *,
    quality: int = 95,
    chunk: int = 256,
    skip_corrupt: bool = False,
    overwrite: bool = False,
    source: str = "",
    image_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WriteResult:
    """Write ``dataset`` to ``out`` as ``fmt`` (folder, list, lmdb or rec); resumes an interrupted write.

    ``source`` identifies the input (a path or a registered name with parameters): a leftover
    ``.partial`` output is resumed only when it was started for the same source and settings.
    ``progress(done, total)`` is called after every committed chunk.
    """
    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ParameterError(f"JPEG quality must be in 1..100, got {quality}")
    out = check_output(out, overwrite)
    if len(dataset) == 0:
        raise DataError("the dataset is empty: nothing to write")
    src = _Source(dataset, fmt in ("lmdb", "rec"), quality, skip_corrupt, image_size)
    job = _job(dataset, fmt, source or repr(dataset), quality, image_size)
    tmp = out.with_name(out.name + ".partial")
    writer: Any
    if fmt == "rec":
        from ..recordio_writer import RecWriter

        RecWriter.check_targets(out, overwrite)
        writer = RecWriter(tmp, job)
    else:
        writer = _LMDBWriter(tmp, job) if fmt == "lmdb" else _FilesWriter(tmp, job, fmt)
    start = writer.done
    src.skipped = list(writer.skipped)
    total = len(dataset)
    for lo in range(start, total, chunk):
        items = src.fetch(range(lo, min(lo + chunk, total)))
        if fmt in ("folder", "rec") and any(c[2] < 0 for c in items):
            raise DataError(f"{fmt} format needs labelled samples (identity labels); use --to list")
        writer.commit(items, lo + len(range(lo, min(lo + chunk, total))), src.skipped)
        if progress is not None:
            progress(writer.done, total)
    rows = writer.rows.all()
    if len(rows) == 0:
        raise DataError("every sample was corrupt: nothing written")
    writer.finish(rows, bool((rows["modality"] >= 0).all()))  # every sample carried a modality
    if fmt == "rec":
        writer.install(out, overwrite)
    else:
        _install(tmp, out, overwrite)
    labels = rows["label"]
    return WriteResult(
        path=out,
        format=fmt,
        written=len(rows),
        skipped=len(src.skipped),
        resumed_from=start,
        num_classes=int(labels.max()) + 1 if labels.max() >= 0 else 0,
    )


class ChunkedOutput:
    """A folder, list or LMDB output committed in chunks and resumable, for producers that are not a
    :class:`Dataset` of known items (``facerun data align``: one photo gives zero or more faces).

    ``job`` identifies the work: a leftover ``OUT.partial`` is resumed only when it was started for
    an equal job. ``done`` counts the source items consumed so far, ``skipped`` is the producer's own
    JSON-able list (e.g. failures), both committed atomically with the records. Items are
    ``(index, image bytes, label, modality, feature npy bytes | None)``; ``index`` names the file in
    folder/list layouts, so give every record its own (``written`` + position is one way).
    """

    def __init__(self, out: str | os.PathLike, fmt: str, job: dict[str, Any], overwrite: bool = False):
        if fmt not in FORMATS:
            raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.out, self.fmt, self.overwrite = Path(out), fmt, overwrite
        if self.out.exists() and not overwrite:
            raise DataError(f"output {self.out} already exists (pass overwrite / --overwrite)")
        if not self.out.parent.is_dir():
            raise DataError(f"output folder {self.out.parent} does not exist")
        self.tmp = self.out.with_name(self.out.name + ".partial")
        self.writer = _LMDBWriter(self.tmp, job) if fmt == "lmdb" else _FilesWriter(self.tmp, job, fmt)
        self.resumed_from = self.writer.done

    @property
    def done(self) -> int:
        return self.writer.done

    @property
    def written(self) -> int:
        return int(self.writer.journal["written"])

    @property
    def skipped(self) -> list[Any]:
        return list(self.writer.skipped)

    def commit(self, items: list[tuple], done: int, skipped: list[Any]) -> None:
        if self.fmt == "folder" and any(c[2] < 0 for c in items):
            raise DataError("folder format needs labelled samples (one folder per identity); use list or lmdb")
        self.writer.commit(items, done, skipped)

    def finish(
        self, *, records: Mapping[bytes, bytes] | None = None, files: Mapping[str, bytes] | None = None
    ) -> np.ndarray:
        """Write the index (plus extra LMDB ``records`` or sidecar ``files``), rename into place,
        and return the (index, label, modality) rows written."""
        rows = self.writer.rows.all()
        if len(rows) == 0:
            raise DataError("nothing to write: no records were committed")
        with_modality = bool((rows["modality"] >= 0).all())
        if isinstance(self.writer, _LMDBWriter):
            self.writer.finish(rows, with_modality, records=records)
        else:
            self.writer.finish(rows, with_modality, files=files)
        _install(self.tmp, self.out, self.overwrite)
        return rows

    def discard(self) -> None:
        """Remove the temporary output (when there is nothing worth keeping)."""
        if isinstance(self.writer, _LMDBWriter):
            self.writer.env.close()
            for p in (self.writer.lock, self.writer.rows_path):
                _clear(p)
        _clear(self.tmp)
