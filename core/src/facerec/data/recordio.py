"""MXNet RecordIO as insightface ships its training sets (``train.rec`` + ``train.idx`` + ``property``),
read and written in pure Python (no mxnet).

Format facts (dmlc-core's recordio, mxnet's ``recordio.py``, insightface's dataset code):

* A record on disk: uint32 magic ``0xCED7230A``, uint32 ``lrecord``, the data, zero padding to a multiple
  of 4 bytes; little endian. ``lrecord = cflag << 29 | length`` (length < 2**29). ``cflag`` 0 is a whole
  record. Data that holds the magic word at a 4-byte aligned position is split there: parts with cflag
  1 (first), 2 (middle), 3 (last), the magic word itself left out; readers put it back between parts.
* An image record's data: the header ``<IfQQ`` (flag, label, id, id2; 24 bytes); when ``flag > 0`` a
  vector of ``flag`` float32 labels follows (the scalar label is then 0); then the encoded image.
* insightface: record 0 is a header record whose label vector is ``(first identity record, end of the
  identity records)``; images are records ``1 .. label[0]-1``; each identity record's label vector is
  the ``(start, end)`` range of that identity's image records. Without such a header (flag 0) every
  record listed in the index is an image (arcface_torch's fallback).
* ``train.idx``: text lines ``key<TAB>byte offset``. ``property``: ``num_classes,height,width``.

Readers share one read-only file descriptor per file and process (``os.pread``: no shared file
position, so threads need no lock); a forked worker opens its own on first use.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .decode import read_bytes

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
#: the image record header: flag (uint32), label (float32), id (uint64), id2 (uint64)
HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1
MAX_LENGTH = 1 << 29
REC_NAME, IDX_NAME, PROPERTY_NAME = "train.rec", "train.idx", "property"


def _padded(n: int) -> int:
    return (n + 3) & ~3


# ------------------------------------------------------------------------------------------ records


def encode_record(data: bytes) -> bytes:
    """The on-disk bytes of one record holding ``data`` (split where ``data`` holds the magic word)."""
    if len(data) >= MAX_LENGTH:
        raise DataError(f"a RecordIO record holds less than 2**29 bytes, got {len(data)}")
    words = np.frombuffer(data[: len(data) & ~3], dtype="<u4")
    cuts = (np.flatnonzero(words == MAGIC) * 4).tolist()
    out, start = [], 0
    for cut in cuts:
        out.append(struct.pack("<II", MAGIC, (1 if start == 0 else 2) << 29 | (cut - start)))
        out.append(data[start:cut])
        start = cut + 4
    out.append(struct.pack("<II", MAGIC, (3 if cuts else 0) << 29 | (len(data) - start)))
    out.append(data[start:])
    out.append(b"\0" * (_padded(len(data)) - len(data)))
    return b"".join(out)


def decode_record(buf: bytes | memoryview, where: str) -> tuple[bytes, int]:
    """``(data, bytes consumed)`` of the record at the start of ``buf``; its parts are joined."""
    view = memoryview(buf)
    parts: list[bytes | memoryview] = []
    pos = 0
    while True:
        if pos + 8 > len(view):
            raise DataError(f"{where}: truncated (record header at byte {pos} of {len(view)} read)")
        magic, lrec = struct.unpack_from("<II", view, pos)
        if magic != MAGIC:
            raise DataError(
                f"{where}: bad record magic 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                "not a RecordIO record or a wrong index offset"
            )
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        if cflag > 3 or (cflag in (2, 3) and not parts) or (cflag in (0, 1) and parts):
            raise DataError(f"{where}: continuation flag {cflag} out of sequence")
        end = pos + 8 + length
        if end > len(view):
            raise DataError(f"{where}: truncated (record needs {end} bytes, {len(view)} available)")
        parts.append(view[pos + 8 : end])
        pos = pos + 8 + _padded(length)
        if cflag in (0, 3):
            break
        parts.append(MAGIC_BYTES)
    return b"".join(parts), min(pos, len(view))


def pack_image_record(label: float | Sequence[float], image: bytes, key: int = 0, id2: int = 0) -> bytes:
    """Record data ``header [+ label vector] + image`` (a sequence label is written as a vector)."""
    if isinstance(label, (int, float, np.integer, np.floating)):
        return HEADER.pack(0, float(label), int(key), int(id2)) + bytes(image)
    vec = np.asarray(label, dtype="<f4").ravel()
    return HEADER.pack(len(vec), 0.0, int(key), int(id2)) + vec.tobytes() + bytes(image)


def unpack_image_record(data: bytes, where: str) -> tuple[float | np.ndarray, int, int, bytes]:
    """``(label or label vector, id, id2, image bytes)`` of an image record's data."""
    if len(data) < HEADER.size:
        raise DataError(f"{where}: record of {len(data)} bytes is shorter than the {HEADER.size}-byte image header")
    flag, label, key, id2 = HEADER.unpack_from(data)
    if flag == 0:
        return float(label), key, id2, data[HEADER.size :]
    end = HEADER.size + 4 * flag
    if flag >= MAX_LENGTH // 4 or end > len(data):
        raise DataError(f"{where}: header announces {flag} labels but the record has {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4", count=flag, offset=HEADER.size).copy(), key, id2, data[end:]


# ------------------------------------------------------------------------------------ index, property


def read_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, offsets)`` (int64) of a ``.idx`` file (``key<TAB>offset`` lines, integer keys)."""
    text = read_bytes(path, "RecordIO index").rstrip(b"\r\n\t ")
    n_lines = text.count(b"\n") + 1 if text else 0
    import warnings

    with warnings.catch_warnings():  # a parse stop is caught by the count check below
        warnings.simplefilter("ignore")
        try:
            flat = np.fromstring(text.decode("ascii"), dtype=np.int64, sep=" ") if text else np.empty(0, np.int64)
        except (UnicodeDecodeError, ValueError):
            flat = np.empty(0, np.int64)
    if len(flat) != 2 * n_lines:
        for no, line in enumerate(text.split(b"\n"), 1):  # name the first bad line
            fields = line.strip().split(b"\t")
            if len(fields) != 2 or not all(f.strip().isdigit() for f in fields):
                raise DataError(
                    f"{path} line {no}: expected 'key<TAB>offset' integers, got {line[:60].decode(errors='replace')!r}"
                )
        raise DataError(f"{path}: not a RecordIO index")
    keys, offsets = flat[0::2].copy(), flat[1::2].copy()
    if len(offsets) and (offsets.min() < 0 or _has_duplicates(offsets)):
        raise DataError(f"{path}: offsets must be distinct and non-negative")
    if _has_duplicates(keys):
        raise DataError(f"{path}: a key is listed twice")
    return keys, offsets


def _has_duplicates(values: np.ndarray) -> bool:
    if len(values) < 2 or bool((np.diff(values) > 0).all()):  # the usual: written in increasing order
        return False
    ordered = np.sort(values)
    return bool((ordered[1:] == ordered[:-1]).any())


def scan_index(fd: int, size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the index of a ``.rec`` without one: hop from record header to record header
    (keys 0..N-1 in file order, as insightface's writers number them)."""
    offsets: list[int] = []
    pos = 0
    while pos < size:
        start = pos
        while True:  # the parts of one record
            head = os.pread(fd, 8, pos)
            if len(head) < 8:
                raise DataError(f"{where}: truncated record header at byte {pos}")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DataError(f"{where}: bad record magic at byte {pos} (record {len(offsets)})")
            pos += 8 + _padded(lrec & _LENGTH_MASK)
            if lrec >> 29 in (0, 3):
                break
        offsets.append(start)
    return np.arange(len(offsets), dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def read_property(path: Path) -> tuple[int, tuple[int, int]] | None:
    """``(num_classes, (height, width))`` from an insightface ``property`` file (None when absent)."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        raise DataError(f"{path}: expected 'num_classes,height,width', got {text[:60]!r}")
    classes, h, w = map(int, fields)
    return classes, (h, w)


def property_text(num_classes: int, height: int, width: int) -> str:
    return f"{int(num_classes)},{int(height)},{int(width)}\n"


# --------------------------------------------------------------------------------- shared handles

_FDS: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> read-only descriptor
_FDS_PID = os.getpid()


def file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def shared_fd(path: Path, fid: tuple[int, int] | None = None) -> int:
    """The process's one read-only descriptor of ``path``; a forked child opens its own."""
    global _FDS_PID
    if os.getpid() != _FDS_PID:
        for fd in _FDS.values():  # inherited from the parent: not ours to keep
            try:
                os.close(fd)
            except OSError:
                pass
        _FDS.clear()
        _FDS_PID = os.getpid()
    key = fid or file_id(path)
    found = _FDS.get(key)
    if found is None:
        found = _FDS[key] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return found


def close_fd(path: Path) -> None:
    """Close the shared descriptor of ``path`` (readers reopen it on next use)."""
    try:
        fd = _FDS.pop(file_id(path), None)
    except OSError:
        return
    if fd is not None:
        os.close(fd)


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:  # pread may return short reads on some filesystems
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def gather_headers(path: Path, offsets: np.ndarray, chunk: int = 1 << 16) -> dict[str, np.ndarray]:
    """The first 40 bytes of many records at once (memory-mapped, vectorised), parsed: ``magic``,
    ``cflag``, ``length``, ``flag``, ``label`` and the first two entries of the label vector ``vec0``,
    ``vec1``. Rows the file ends inside are zero (their magic is then 0, never ``MAGIC``)."""
    size = os.path.getsize(path)
    n = len(offsets)
    rows = np.zeros((n, 40), dtype=np.uint8)
    if n and size:
        mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(size,))
        cols = np.arange(40, dtype=np.int64)
        for lo in range(0, n, chunk):
            pos = offsets[lo : lo + chunk, None] + cols
            inside = pos < size
            rows[lo : lo + chunk] = np.where(inside, mm[np.minimum(pos, size - 1)], 0)
        del mm
    words = rows.view("<u4")  # [n, 10]
    lrec = words[:, 1]
    return {
        "magic": words[:, 0],
        "cflag": lrec >> 29,
        "length": lrec & _LENGTH_MASK,
        "flag": words[:, 2],
        "label": rows[:, 12:16].copy().view("<f4")[:, 0],
        "vec0": rows[:, 32:36].copy().view("<f4")[:, 0],
        "vec1": rows[:, 36:40].copy().view("<f4")[:, 0],
    }
