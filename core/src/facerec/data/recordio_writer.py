"""Writing insightface RecordIO sets (``.rec`` + ``.idx`` + ``property``) for ``write_dataset``.

Everything goes to ``OUT.partial/`` first (``train.rec``, ``train.idx``, a JSON journal and the row
log): records are appended chunk by chunk, both files are synced, then the journal notes their
lengths; a resumed write truncates them back to the journal. Record 0 (the header record) is written
first as a placeholder of fixed size and filled in at the end, when the image count is known.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import recordio as rio
from .decode import decode_uint8
from .writers.journal import _JOURNAL, JournalledWriter
from .writers.output import _clear, _install, _write_atomic

_HEADER_RECORD_SIZE = len(rio.encode_record(rio.pack_image_record([0.0, 0.0], b"")))


def _targets(out: Path) -> dict[str, Path]:
    """Final paths: ``X.rec`` -> X.rec, X.idx, property beside them; anything else is a folder."""
    if out.suffix == ".rec":
        return {"rec": out, "idx": out.with_suffix(".idx"), "property": out.parent / rio.PROPERTY_NAME}
    return {"rec": out / rio.REC_NAME, "idx": out / rio.IDX_NAME, "property": out / rio.PROPERTY_NAME}


def _identity_runs(labels: np.ndarray) -> np.ndarray | None:
    """``[k, 2]`` sample ranges when every label's samples are one contiguous run, else None."""
    if not len(labels):
        return None
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    if len(np.unique(labels[starts])) != len(starts):
        return None  # some label comes back after another: ranges cannot describe it
    return np.stack([starts, np.r_[starts[1:], len(labels)]], 1)


class RecWriter(JournalledWriter):
    """The ``rec`` output of :func:`facerec.data.writers.write_dataset` (same protocol as its writers)."""

    @staticmethod
    def check_targets(out: Path, overwrite: bool) -> None:
        if overwrite:
            return
        for kind, path in _targets(out).items():
            if path.exists() and path != out:
                hint = " (another set's, in the same folder?)" if kind == "property" else ""
                raise DataError(f"{path} already exists{hint}; pass overwrite / --overwrite or write into a new folder")

    def __init__(self, tmp: Path, job: dict[str, Any]):
        self.rec, self.idx = tmp / rio.REC_NAME, tmp / rio.IDX_NAME
        header = rio.encode_record(rio.pack_image_record([0.0, 0.0], b"", key=0))
        self._header = header
        super().__init__(
            tmp,
            job,
            valid=self.rec.is_file() and self.idx.is_file(),
            rec_bytes=len(header),
            idx_bytes=4,
            image_size=None,
        )
        for path, key in ((self.rec, "rec_bytes"), (self.idx, "idx_bytes")):
            if path.stat().st_size < self.journal[key]:
                raise DataError(f"{path} is shorter than its journal; delete {tmp} and write again")
            os.truncate(path, self.journal[key])  # drop whatever an interrupted chunk left behind

    def _start(self, tmp: Path) -> None:
        self.rec.write_bytes(self._header)
        self.idx.write_bytes(b"0\t0\n")

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def commit(self, items: list[tuple], done: int, skipped: list[int]) -> None:
        written = int(self.journal["written"])
        pos = int(self.journal["rec_bytes"])
        records, lines = [], []
        for k, (_, data, label, _, _) in enumerate(items):
            key = written + k + 1  # record 0 is the header record
            record = rio.encode_record(rio.pack_image_record(float(label), data, key=key))
            records.append(record)
            lines.append(f"{key}\t{pos}\n")
            pos += len(record)
        if items and self.journal["image_size"] is None:
            u8 = decode_uint8(items[0][1], f"sample {items[0][0]}")
            self.journal["image_size"] = [int(u8.shape[-2]), int(u8.shape[-1])]
        rec_data, idx_data = b"".join(records), "".join(lines).encode()
        self._append(self.rec, rec_data)
        self._append(self.idx, idx_data)
        self.rows.append(items)  # rows may run ahead of the journal, never behind
        self.journal.update(
            done=done,
            written=written + len(items),
            skipped=list(skipped),
            rec_bytes=pos,
            idx_bytes=int(self.journal["idx_bytes"]) + len(idx_data),
        )
        self._write_journal(self.journal)
        self.done, self.skipped = done, list(skipped)

    def finish(self, rows: np.ndarray, with_modality: bool) -> None:
        n = len(rows)
        labels = rows["label"].astype(np.int64)
        runs = _identity_runs(labels)
        pos = int(self.journal["rec_bytes"])
        records, lines = [], []
        for j, (start, end) in enumerate(runs if runs is not None else ()):
            key = n + 1 + j
            record = rio.encode_record(rio.pack_image_record([start + 1.0, end + 1.0], b"", key=key))
            records.append(record)
            lines.append(f"{key}\t{pos}\n")
            pos += len(record)
        self._append(self.rec, b"".join(records))
        self._append(self.idx, "".join(lines).encode())
        header = rio.encode_record(rio.pack_image_record([n + 1.0, n + 1.0 + len(records)], b"", key=0))
        if len(header) != _HEADER_RECORD_SIZE:  # cannot happen: the label words never equal the magic
            raise DataError("internal error: the header record changed size")
        with open(self.rec, "r+b") as f:
            f.write(header)
            f.flush()
            os.fsync(f.fileno())
        h, w = self.journal["image_size"] or (0, 0)
        _write_atomic(self.tmp / rio.PROPERTY_NAME, rio.property_text(int(labels.max()) + 1 if n else 0, h, w).encode())
        (self.tmp / _JOURNAL).unlink()
        (self.tmp / ".facerec-rows.bin").unlink()

    def install(self, out: Path, overwrite: bool) -> None:
        """Move the finished files into place (the ``.rec`` last: its presence means complete)."""
        targets = _targets(out)
        if out.suffix != ".rec":
            _install(self.tmp, out, overwrite)
            return
        for kind in ("idx", "property", "rec"):
            os.replace(
                self.tmp / {"rec": rio.REC_NAME, "idx": rio.IDX_NAME, "property": rio.PROPERTY_NAME}[kind],
                targets[kind],
            )
        _clear(self.tmp)
