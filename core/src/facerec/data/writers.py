"""Write any facerec Dataset to real files: image folder, ``path label [domain]`` list, or LMDB.

Layouts (what the papers' loaders read):

* ``folder``: ``OUT/<label:06d>/<index:08d>.<ext>`` (one folder per identity; needs labels); when the
  source has modality, ``OUT/<label:06d>/<index:08d>_{VIS,NIR}.<ext>`` (the mark the DVG originals'
  loaders look for in paths; read back with ``image-folder``'s ``modality_rule='_(NIR|VIS)\\.'``);
* ``list``:   ``OUT/images/<label:06d>/<index:08d>.<ext>`` plus ``OUT/list.txt`` with lines
  ``images/... label`` and, when the source has modality, a third column (0 = VIS, 1 = NIR; read
  it back with ``modality_rule=2``); unlabelled samples get label -1;
* ``lmdb``:   a single-file LMDB in the Vec2Face/HSFace layout: keys ``b"0".."N-1"`` holding
  ``msgpack((jpeg, npy_feature, label))`` when the source has features, else ``(jpeg, label)``,
  and ``__keys__``, ``__len__``, ``__classnum__`` (plus ``__labels__``/``__modality__`` so that
  readers get labels without a scan);
* ``rec``:    insightface's MXNet RecordIO layout (what arcface_torch reads): ``OUT.rec`` + ``OUT.idx``
  + ``property`` beside them, or ``OUT/train.rec``, ``train.idx``, ``property`` for a folder; JPEG
  image records 1..N (label, id = record number), the header record 0 and, when each identity's
  samples are contiguous, one identity record per label (see :mod:`facerec.data.recordio`).
  Labels only: modality and features are not stored.

Atomic and resumable: everything goes to ``OUT.partial`` first, committed in chunks with a
journal (for LMDB inside the same transaction as the records); an interrupted write resumes from
the last committed chunk when run again, and ``OUT`` appears only, by rename, when complete.
Stored image bytes are copied as they are (no re-encoding) when the source exposes them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from ..api import MODALITIES, Dataset
from ..errors import DataError, ParameterError
from .decode import JPEG_MAGIC, PNG_MAGIC, decode_uint8, encode_jpeg

FORMATS = ("folder", "list", "lmdb", "rec")
LIST_NAME = "list.txt"
#: written into every folder/list output: ``overwrite`` replaces only outputs that carry it (an LMDB
#: output is recognised by the ``__labels__`` key this writer adds)
MARKER = ".facerec-dataset.json"
_JOURNAL = ".facerec-progress.json"
_ROWS = np.dtype([("index", "<i8"), ("label", "<i8"), ("modality", "<i8")])


@attrs.frozen
class WriteResult:
    """What a write produced."""

    path: Path
    format: str
    written: int
    skipped: int
    resumed_from: int
    num_classes: int


def _suffix(data: bytes) -> str:
    if data.startswith(JPEG_MAGIC):
        return ".jpg"
    if data.startswith(PNG_MAGIC):
        return ".png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return ".pgm" if data[:2] in (b"P2", b"P5") else ".ppm" if data[:2] in (b"P3", b"P6") else ".pbm"
    if data.startswith(b"BM"):
        return ".bmp"
    return ".img"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class _Source:
    """Fetches samples in chunks as (index, image bytes, label, modality, feature npy bytes | None)."""

    def __init__(self, dataset: Dataset, jpeg_only: bool, quality: int, skip_corrupt: bool,
                 image_size: int | None):
        self.ds = dataset
        self.jpeg_only = jpeg_only
        self.quality = quality
        self.skip_corrupt = skip_corrupt
        self.image_size = image_size
        # Stored bytes can be copied only when no resize was asked for (by us or the dataset) and
        # the sample is the stored image (a subclass overriding ``_load``, e.g. to crop, is not).
        from .formats import LMDBDataset
        from .formats.base import _ImageDataset

        self.raw = (isinstance(dataset, _ImageDataset) and image_size is None and dataset.image_size is None
                    and type(dataset)._load in (_ImageDataset._load, LMDBDataset._load))
        self.has_features = bool(getattr(dataset, "has_features", False))
        self.skipped: list[int] = []

    def _encode(self, image: torch.Tensor) -> bytes:
        if self.image_size is not None:
            from .decode import to_canonical

            image = to_canonical((image * 255).round().to(torch.uint8), self.image_size)
        return encode_jpeg(image, self.quality)

    def _from_item(self, i: int, item: dict[str, Any]) -> tuple:
        image = item.get("image")
        if image is None:
            raise DataError(f"sample {i} has no image (feature datasets cannot be written as images)")
        feature = item.get("feature")
        npy = None
        if feature is not None:
            buf = io.BytesIO()
            np.save(buf, torch.as_tensor(feature).detach().cpu().float().numpy(), allow_pickle=False)
            npy = buf.getvalue()
        modality = int(item["modality"]) if "modality" in item else -1
        return (i, self._encode(image), int(item.get("label", -1)), modality, npy)

    def _raw_one(self, i: int) -> tuple:
        from .formats import LMDBDataset

        ds: Any = self.ds
        if isinstance(ds, LMDBDataset):  # one record read for image and feature
            data, npy, _ = ds._record_parts(i)
            npy = npy if self.has_features else None
        else:
            data, npy = ds.read_raw(i), None
        u8 = decode_uint8(data, ds.describe_item(i))  # validates the bytes (corrupt files are caught here)
        if self.jpeg_only and not data.startswith(JPEG_MAGIC):
            data = encode_jpeg(u8, self.quality)
        label = int(ds._labels[i])
        modality = int(ds._modality[i]) if ds._modality is not None else -1
        return (i, data, label, modality, npy)

    def fetch(self, indices: range) -> list[tuple]:
        if self.raw:
            out = []
            for i in indices:
                try:
                    out.append(self._raw_one(i))
                except DataError:
                    if not self.skip_corrupt:
                        raise
                    self.skipped.append(i)
            return out
        batch_fn = getattr(type(self.ds), "batch", None)
        if batch_fn is not None and batch_fn is not Dataset.batch:
            try:
                b = self.ds.batch(list(indices))
                return [self._from_item(i, {k: v[j] for k, v in b.items()}) for j, i in enumerate(indices)]
            except DataError:
                if not self.skip_corrupt:
                    raise  # fall through to per-item fetching to find and skip the bad ones
        out = []
        for i in indices:
            try:
                out.append(self._from_item(i, self.ds[i]))
            except DataError:
                if not self.skip_corrupt:
                    raise
                self.skipped.append(i)
        return out


def _job(dataset: Dataset, fmt: str, source: str, quality: int, image_size: int | None) -> dict[str, Any]:
    return {"format": fmt, "length": len(dataset), "source": source, "quality": quality,
            "image_size": image_size, "dataset": type(dataset).__name__}


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
        from .formats import LABELS_KEY, open_lmdb

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
        raise DataError(f"output {out} exists and was not written by facerec (no {MARKER} marker): --overwrite "
                        f"replaces only facerec's own outputs; delete it yourself or choose another output")


def check_output(out: str | os.PathLike, overwrite: bool = False, option: str = "output") -> Path:
    """What :func:`write_dataset` checks before any work: ``out`` is new (or, with ``overwrite``, an
    output of this writer) and its folder exists and is writable (no regular file on the way)."""
    from ..outputs import check_writable_dir

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


def write_dataset(dataset: Dataset, out: str | os.PathLike, fmt: str, *, quality: int = 95, chunk: int = 256,
                  skip_corrupt: bool = False, overwrite: bool = False, source: str = "",
                  image_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> WriteResult:
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
        from .recordio_writer import RecWriter

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
    return WriteResult(path=out, format=fmt, written=len(rows), skipped=len(src.skipped), resumed_from=start,
                       num_classes=int(labels.max()) + 1 if labels.max() >= 0 else 0)


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

    def finish(self, *, records: Mapping[bytes, bytes] | None = None,
               files: Mapping[str, bytes] | None = None) -> np.ndarray:
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


class _FilesWriter(JournalledWriter):
    """folder / list layouts inside a temporary directory with a JSON journal."""

    def __init__(self, tmp: Path, job: dict[str, Any], fmt: str):
        super().__init__(tmp, job)
        self.fmt = fmt
        self.images = tmp / "images" if fmt == "list" else tmp
        self._dirs: set[Path] = set()

    def relpath(self, index: int, label: int, data: bytes, modality: int = -1) -> str:
        folder = f"{label:06d}" if label >= 0 else "unlabeled"
        if self.fmt == "list":  # the list's third column says the modality
            return f"images/{folder}/{index:08d}{_suffix(data)}"
        # a folder has no column: the file name says NIR or VIS (what the DVG originals' loaders look for)
        mark = f"_{MODALITIES[modality]}" if modality >= 0 else ""
        return f"{folder}/{index:08d}{mark}{_suffix(data)}"

    def commit(self, items: list[tuple], done: int, skipped: list[int]) -> None:
        for index, data, label, modality, _ in items:
            path = self.tmp / self.relpath(index, label, data, modality)
            if path.parent not in self._dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(path.parent)
            _write_atomic(path, data)
        self.rows.append(items)
        self.done, self.skipped = done, list(skipped)
        self.journal.update(done=done, written=int(self.journal["written"]) + len(items), skipped=self.skipped)
        self._write_journal(self.journal)

    def finish(self, rows: np.ndarray, with_modality: bool, files: Mapping[str, bytes] | None = None) -> None:
        for name, data in (files or {}).items():  # sidecar files (e.g. facerun data align's metadata)
            _write_atomic(self.tmp / name, data)
        if self.fmt == "list":
            # file names come from the rows; extensions from what is on disk (copied bytes keep theirs)
            names = {}
            for folder in self.images.iterdir():
                if folder.is_dir():
                    for f in folder.iterdir():
                        names[int(f.stem)] = f"images/{folder.name}/{f.name}"
            lines = []
            for r in rows:
                line = f"{names[int(r['index'])]} {int(r['label'])}"
                if with_modality:
                    line += f" {int(r['modality'])}"
                lines.append(line)
            _write_atomic(self.tmp / LIST_NAME, ("\n".join(lines) + "\n").encode())
        marker = {"format": "facerec-dataset-1", "layout": self.fmt, "samples": int(len(rows))}
        if with_modality:
            marker["modality"] = ("column 3 (0 = VIS, 1 = NIR)" if self.fmt == "list" else
                                  "file names end in _VIS / _NIR (read back with modality_rule='_(NIR|VIS)\\.')")
        _write_atomic(self.tmp / MARKER, (json.dumps(marker) + "\n").encode())
        (self.tmp / _JOURNAL).unlink()
        (self.tmp / ".facerec-rows.bin").unlink()


class _LMDBWriter:
    """Single-file LMDB; the journal (``__progress__``) commits in the same transaction as records."""

    def __init__(self, tmp: Path, job: dict[str, Any]):
        import msgpack

        from .formats import open_lmdb

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
        meta = [(b"__keys__", msgpack.packb([str(i).encode() for i in range(n)], use_bin_type=True)),
                (b"__len__", msgpack.packb(n)),
                (b"__classnum__", msgpack.packb(int(labels.max()) + 1 if labels.max() >= 0 else 0)),
                (b"__labels__", labels.tobytes())]
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


__all__ = ["FORMATS", "WriteResult", "write_dataset", "check_output", "written_by_facerec"]
