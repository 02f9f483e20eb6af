"""LMDB datasets in the Vec2Face/HSFace layout: the extension keys, shared read-only environments,
msgpack records and :class:`LMDBDataset`."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ..decode import decode_uint8
from .base import _ImageDataset


#: Extension key written by facerec's writer: every record's label as int64 bytes, so ``labels``
#: needs no scan. Readers fall back to scanning the records where it is absent (original files).
LABELS_KEY = b"__labels__"
#: Extension key: every record's modality as int64 bytes (only when the source had modality).
MODALITY_KEY = b"__modality__"
#: Extension key: the name of the alignment template the images are aligned to (UTF-8).
TEMPLATE_KEY = b"__template__"


def open_lmdb(path: str | os.PathLike, *, write: bool = False, map_size: int = 1 << 30):
    """Open an LMDB environment; a file is a single-file LMDB (``subdir=False``), a directory holds data.mdb."""
    import lmdb

    p = Path(path)
    subdir = p.is_dir()
    if write:
        return lmdb.open(
            str(p), subdir=subdir, map_size=map_size, readahead=False, meminit=False, max_dbs=0, sync=True, lock=True
        )
    return lmdb.open(str(p), subdir=subdir, readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)


_READERS: dict[tuple[int, int], Any] = {}  # (st_dev, st_ino) of the data file -> read-only env
_READERS_PID = os.getpid()


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path / "data.mdb" if path.is_dir() else path)
    return (st.st_dev, st.st_ino)


def shared_reader(path: str | os.PathLike, file_id: tuple[int, int] | None = None):
    """The process's one read-only, lock-free environment for an LMDB file.

    LMDB (and py-lmdb, which enforces it) allows one open per file and process, so every dataset
    on the same file shares it. A forked DataLoader worker closes the handles it inherited and
    opens its own on first use: LMDB handles must not cross fork.
    """
    global _READERS_PID
    if os.getpid() != _READERS_PID:
        for env in _READERS.values():
            try:
                env.close()
            except Exception:
                pass
        _READERS.clear()
        _READERS_PID = os.getpid()
    key = file_id or _file_id(Path(path))
    env = _READERS.get(key)
    if env is None:
        env = _READERS[key] = open_lmdb(Path(path))
    return env


def close_reader(path: str | os.PathLike) -> None:
    """Close the shared environment of ``path`` (datasets on it reopen on next use)."""
    try:
        env = _READERS.pop(_file_id(Path(path)), None)
    except OSError:
        return
    if env is not None:
        env.close()


def unpack_record(raw: bytes, where: str) -> tuple[bytes, bytes | None, int]:
    """msgpack ``(jpeg, npy, label)`` (Vec2Face) or ``(jpeg, label)`` (SOTA-FR/HSFace) -> parts."""
    import msgpack

    try:
        value = msgpack.unpackb(raw, raw=True, strict_map_key=False)
    except Exception as exc:
        raise DataError(f"{where}: record is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise DataError(
            f"{where}: expected msgpack (image, [feature,] label), got {type(value).__name__}"
            f"{' of length ' + str(len(value)) if isinstance(value, (list, tuple)) else ''}"
        )
    image, label = value[0], value[-1]
    feature = value[1] if len(value) == 3 else None
    if not isinstance(image, (bytes, bytearray)) or not isinstance(label, int) or isinstance(label, bool):
        raise DataError(f"{where}: expected (image bytes, [feature,] int label)")
    if feature is not None and not isinstance(feature, (bytes, bytearray)):
        raise DataError(f"{where}: feature is not .npy bytes")
    return bytes(image), (bytes(feature) if feature is not None else None), int(label)


def _skip_bytes_element(view: memoryview, pos: int) -> int:
    """Position after one msgpack bin/str (or nil) element starting at ``pos``."""
    t = view[pos]
    if 0xA0 <= t <= 0xBF:  # fixstr (msgpack < 1.0 wrote bytes as str)
        return pos + 1 + (t & 0x1F)
    if t in (0xC4, 0xD9):
        return pos + 2 + view[pos + 1]
    if t in (0xC5, 0xDA):
        return pos + 3 + int.from_bytes(view[pos + 1 : pos + 3], "big")
    if t in (0xC6, 0xDB):
        return pos + 5 + int.from_bytes(view[pos + 1 : pos + 5], "big")
    if t == 0xC0:
        return pos + 1
    raise ValueError(f"unexpected msgpack type 0x{t:02x}")


def record_label(view: memoryview, where: str) -> int:
    """The label of a record without reading its image bytes: only the header and the tail are
    touched, so scanning the labels of a large LMDB reads a page or two per record, not the JPEGs."""
    import msgpack

    try:
        n = view[0] - 0x90
        if n not in (2, 3):
            raise ValueError("not a 2- or 3-element array")
        pos = 1
        for _ in range(n - 1):
            pos = _skip_bytes_element(view, pos)
        label = msgpack.unpackb(bytes(view[pos:]))
        if not isinstance(label, int) or isinstance(label, bool):
            raise ValueError("label is not an int")
        return int(label)
    except Exception:
        return unpack_record(bytes(view), where)[2]  # the full parser names what is wrong


def decode_feature(npy: bytes, where: str) -> Tensor:
    try:
        arr = np.load(io.BytesIO(npy), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{where}: feature is not a valid .npy ({type(exc).__name__}: {exc})") from None
    return torch.from_numpy(np.asarray(arr, dtype=np.float32).reshape(-1).copy())


class LMDBDataset(_ImageDataset):
    """LMDB in the Vec2Face/HSFace layout: msgpack ``(JPEG, [.npy feature,] label)`` records.

    Meta keys ``__keys__`` (msgpack list of record keys), ``__len__``, ``__classnum__``, and where
    facerec wrote it ``__template__`` (the images' alignment template, UTF-8; ``template`` overrides). ``mask``
    is an optional ``.npy`` of record indices (Vec2Face's subset masks): the dataset then has
    ``len(mask)`` samples and sample i is record ``mask[i]``. Opened read-only and lock-free, once
    per process (DataLoader workers reopen after fork/spawn; the object pickles without the handle).
    """

    paper = "Vec2Face / HSFace LMDB layout (Wu et al., ICLR 2025)"

    def __init__(
        self,
        path: str | os.PathLike,
        mask: str | os.PathLike | np.ndarray | None = None,
        image_size: int | None = None,
        skip_corrupt: bool = False,
        features: bool = True,
        template: str | None = None,
    ):
        import msgpack

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"LMDB not found: {self.path}")
        where = str(self.path)
        try:
            self._file_id = _file_id(self.path)
            env = shared_reader(self.path, self._file_id)
        except Exception as exc:
            raise DataError(f"cannot open LMDB {self.path}: {str(exc).splitlines()[0]}") from None
        with env.begin() as txn:
            keys_raw, len_raw = txn.get(b"__keys__"), txn.get(b"__len__")
            if keys_raw is None or len_raw is None:
                missing = "__keys__" if keys_raw is None else "__len__"
                raise DataError(f"{where}: no {missing} key; not a Vec2Face/HSFace LMDB (or an unfinished write)")
            try:
                keys = msgpack.unpackb(keys_raw, raw=True)
                length = int(msgpack.unpackb(len_raw))
                classnum = txn.get(b"__classnum__")
                self.classnum = int(msgpack.unpackb(classnum)) if classnum is not None else None
            except Exception as exc:
                raise DataError(f"{where}: unreadable meta keys ({type(exc).__name__}: {exc})") from None
            if not isinstance(keys, list) or len(keys) != length:
                raise DataError(
                    f"{where}: __keys__ lists {len(keys) if isinstance(keys, list) else '?'} "
                    f"records but __len__ says {length}"
                )
            keys = [k if isinstance(k, bytes) else str(k).encode() for k in keys]
            # Vec2Face keys are b"0".."N-1": keep no list then (1M keys would cost ~60 MB per worker).
            self._keys: list[bytes] | None = None if all(k == str(i).encode() for i, k in enumerate(keys)) else keys
            self.num_records = length
            labels = self._read_int64(txn, LABELS_KEY, length)
            modality = self._read_int64(txn, MODALITY_KEY, length)
            stored_template = txn.get(TEMPLATE_KEY)
            if template is None and stored_template is not None:
                try:
                    template = bytes(stored_template).decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise DataError(f"{where}: the __template__ record is not UTF-8 text") from None
                if not template:
                    raise DataError(f"{where}: the __template__ record is empty")
            first = txn.get(self._key(0)) if length else None
            self.has_features = first is not None and features and unpack_record(first, self._where(0))[1] is not None
        if labels is None:  # original files: read every record's label (no image read or decode)
            labels = np.empty(length, dtype=np.int64)
            with env.begin(buffers=True) as txn:
                for r in range(length):
                    view = txn.get(self._key(r))
                    if view is None:
                        raise DataError(f"{self._where(r)}: record listed in __keys__ is missing")
                    labels[r] = record_label(view, self._where(r))
        self.mask_path: Path | None = None
        self.indices: np.ndarray | None = None
        if mask is not None:
            self.indices = self._load_mask(mask, length)
            labels = labels[self.indices]
            modality = None if modality is None else modality[self.indices]
        super().__init__(labels, modality, image_size, skip_corrupt, template)
        if self.classnum is not None:
            self.num_classes = max(self.num_classes, self.classnum) if mask is None else self.num_classes

    @staticmethod
    def _read_int64(txn: Any, key: bytes, length: int) -> np.ndarray | None:
        raw = txn.get(key)
        if raw is None:
            return None
        arr = np.frombuffer(raw, dtype="<i8")
        return arr.astype(np.int64) if len(arr) == length else None

    def _load_mask(self, mask: str | os.PathLike | np.ndarray, length: int) -> np.ndarray:
        if isinstance(mask, np.ndarray):
            arr = mask
        else:
            self.mask_path = Path(mask)
            try:
                arr = np.load(self.mask_path, allow_pickle=False)
            except FileNotFoundError:
                raise DataError(f"mask file not found: {self.mask_path}") from None
            except Exception as exc:
                from ...filekind import kind, read_failure

                why = read_failure(self.mask_path, exc, "a .npy array")
                if why is None and kind(self.mask_path) in ("pickle", "torch-legacy"):
                    why = (
                        f"{self.mask_path}: holds pickled objects, which the safe loader refuses (save the mask "
                        f"with numpy.save as a plain integer array)"
                    )
                raise DataError(f"mask {why or f'{self.mask_path} is not a valid .npy: {exc}'}") from None
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(
                f"mask {self.mask_path or '<array>'} must be a 1-D integer array of record indices, "
                f"got {arr.dtype} {arr.shape}"
            )
        if len(arr) and (arr.min() < 0 or arr.max() >= length):
            raise DataError(
                f"mask {self.mask_path or '<array>'} holds record index {int(arr.max())} outside 0..{length - 1}"
            )
        return arr.astype(np.int64)

    def _key(self, record: int) -> bytes:
        return self._keys[record] if self._keys is not None else str(record).encode()

    def _where(self, record: int) -> str:
        return f"{self.path} key {self._key(record).decode(errors='replace')!r}"

    def record(self, index: int) -> int:
        """LMDB record number of sample ``index`` (through the mask)."""
        return int(self.indices[index]) if self.indices is not None else int(index)

    def _txn(self):
        return shared_reader(self.path, self._file_id).begin(buffers=False)

    def _record_parts(self, index: int) -> tuple[bytes, bytes | None, int]:
        record = self.record(index)
        with self._txn() as txn:
            raw = txn.get(self._key(record))
        where = self._where(record)
        if raw is None:
            raise DataError(f"{where}: record missing")
        return unpack_record(raw, where)

    def describe_item(self, index: int) -> str:
        return self._where(self.record(index))

    def read_raw(self, index: int) -> bytes:
        return self._record_parts(index)[0]

    def read_feature(self, index: int) -> Tensor | None:
        npy = self._record_parts(index)[1]
        return None if npy is None else decode_feature(npy, self.describe_item(index))

    def _load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, npy, _ = self._record_parts(index)
        where = self.describe_item(index)
        u8 = decode_uint8(image, where)
        if not self.has_features:
            return u8, {}
        if npy is None:
            raise DataError(f"{where}: record has no feature")
        return u8, {"feature": decode_feature(npy, where)}

    def close(self) -> None:
        close_reader(self.path)

    def __repr__(self) -> str:
        return f"LMDBDataset({str(self.path)!r}, {len(self)} images)"
