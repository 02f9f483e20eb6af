"""The ``lmdb`` layout (Vec2Face/HSFace): records and journal committed in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .journal import _RowLog
from .output import _clear


class _LMDBWriter:
    """Single-file LMDB; the journal (``__progress__``) commits in the same transaction as records."""

    def __init__(self, tmp: Path, job: dict[str, Any]):
        import msgpack

        from ..formats import open_lmdb

        self.tmp = tmp
        self.lock = tmp.with_name(tmp.name + "-lock")
        self.rows_path = tmp.with_name(tmp.name + ".rows")
        journal = None
        if tmp.is_file():
            try:
                env = open_lmdb(tmp, write=True)
                with env.begin() as txn:
                    raw = txn.get(b"__progress__")
                journal = msgpack.unpackb(raw) if raw is not None else None
                env.close()
            except Exception:
                journal = None
        if journal is None or journal.get("job") != job:
            for p in (tmp, self.lock, self.rows_path):
                _clear(p)
            journal = {"job": job, "done": 0, "written": 0, "skipped": []}
        self.journal = journal
        self.done, self.skipped = int(journal["done"]), list(journal["skipped"])
        self.rows = _RowLog(self.rows_path, int(journal["written"]))
        self.map_size = max(1 << 26, 2 * tmp.stat().st_size if tmp.exists() else 0)
        self.env = open_lmdb(tmp, write=True, map_size=self.map_size)
        if not tmp.exists():  # lmdb creates it on open; make a directory-style path impossible
            raise DataError(f"could not create LMDB {tmp}")

    def _put(self, pairs: list[tuple[bytes, bytes]]) -> None:
        import lmdb

        need = sum(len(k) + len(v) + 64 for k, v in pairs)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in pairs:
                        txn.put(k, v)
                return
            except lmdb.MapFullError:
                self.map_size = 2 * self.map_size + 2 * need
                self.env.set_mapsize(self.map_size)

    def commit(self, items: list[tuple], done: int, skipped: list[int]) -> None:
        import msgpack

        written = int(self.journal["written"])
        pairs = []
        for k, (_, data, label, _, npy) in enumerate(items):
            value = (data, npy, label) if npy is not None else (data, label)
            pairs.append((str(written + k).encode(), msgpack.packb(value, use_bin_type=True)))
        self.rows.append(items)  # rows first: they may run ahead of the journal, never behind
        self.journal.update(done=done, written=written + len(items), skipped=list(skipped))
        pairs.append((b"__progress__", msgpack.packb(self.journal, use_bin_type=True)))
        self._put(pairs)
        self.done, self.skipped = done, list(skipped)

    def finish(self, rows: np.ndarray, with_modality: bool, records: Mapping[bytes, bytes] | None = None) -> None:
        import msgpack

        n = len(rows)
        labels = rows["label"].astype("<i8")
        meta = [
            (b"__keys__", msgpack.packb([str(i).encode() for i in range(n)], use_bin_type=True)),
            (b"__len__", msgpack.packb(n)),
            (b"__classnum__", msgpack.packb(int(labels.max()) + 1 if labels.max() >= 0 else 0)),
            (b"__labels__", labels.tobytes()),
        ]
        if with_modality:
            meta.append((b"__modality__", rows["modality"].astype("<i8").tobytes()))
        meta.extend((records or {}).items())
        self._put(meta)
        with self.env.begin(write=True) as txn:
            txn.delete(b"__progress__")
        self.env.sync(True)
        self.env.close()
        _clear(self.lock)
        _clear(self.rows_path)
