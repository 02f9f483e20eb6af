"""Resumable writing: a JSON journal of committed chunks and the append-only (index, label, modality) rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .output import _clear, _write_atomic


_JOURNAL = ".facerec-progress.json"
_ROWS = np.dtype([("index", "<i8"), ("label", "<i8"), ("modality", "<i8")])


class _RowLog:
    """Append-only (index, label, modality) rows, truncated back to the journal on resume."""

    def __init__(self, path: Path, keep: int):
        self.path = path
        rows = np.fromfile(path, dtype=_ROWS) if path.exists() else np.empty(0, dtype=_ROWS)
        if len(rows) < keep:
            raise DataError(f"{path}: progress rows are shorter than the journal; delete the .partial output")
        rows[:keep].tofile(path)
        self.rows = [rows[:keep]]

    def append(self, chunk: list[tuple]) -> None:
        arr = np.array([(c[0], c[2], c[3]) for c in chunk], dtype=_ROWS)
        with open(self.path, "ab") as f:
            arr.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(arr)

    def all(self) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.empty(0, dtype=_ROWS)


class JournalledWriter:
    """A writer that works inside a temporary directory and records its progress in a JSON journal, so a
    killed run resumes where the last committed chunk ended (a journal of another job starts afresh)."""

    def __init__(self, tmp: Path, job: dict[str, Any], *, valid: bool = True, **extra: Any):
        self.tmp = tmp
        journal = self._read_journal()
        if journal is None or journal.get("job") != job or not valid:
            _clear(tmp)
            tmp.mkdir()
            journal = {"job": job, "done": 0, "written": 0, "skipped": [], **extra}
            self._start(tmp)
            self._write_journal(journal)
        self.journal = journal
        self.done, self.skipped = int(journal["done"]), list(journal["skipped"])
        self.rows = _RowLog(tmp / ".facerec-rows.bin", int(journal["written"]))

    def _start(self, tmp: Path) -> None:
        """Files a fresh output begins with (none by default)."""

    def _read_journal(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.tmp / _JOURNAL).read_text())
        except (OSError, ValueError):
            return None

    def _write_journal(self, journal: dict[str, Any]) -> None:
        _write_atomic(self.tmp / _JOURNAL, json.dumps(journal).encode())
