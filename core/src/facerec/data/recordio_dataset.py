"""The insightface RecordIO training set (``train.rec`` + ``train.idx`` + ``property``) as a facerec Dataset."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import recordio as rio
from .formats.base import _ImageDataset


def _resolve_paths(path: Path, idx: str | os.PathLike | None) -> tuple[Path, Path]:
    rec = path / rio.REC_NAME if path.is_dir() else path
    if not rec.is_file():
        raise DataError(
            f"RecordIO file not found: {rec}" + (" (expected train.rec in the folder)" if path.is_dir() else "")
        )
    return rec, Path(idx) if idx is not None else rec.with_suffix(".idx")


_PLAIN = struct.Struct("<III")  # magic, lrecord, image header flag
_LENGTH_MASK = (1 << 29) - 1


class RecordIODataset(_ImageDataset):
    """insightface RecordIO (MXNet ``.rec`` + ``.idx``, ``property``): MS1MV2/V3, Glint360K, WebFace42M,
    CASIA-WebFace and UMDFaces as distributed, read without mxnet.

    ``path``: the ``.rec`` file or the folder holding ``train.rec``. ``idx``: the index (default: the
    ``.rec`` path with ``.idx``; without one the records are found by scanning the file). Samples are
    the image records (1 .. header[0]-1 when record 0 is insightface's header record, else every
    indexed record); labels come from the images' headers (a label vector's first entry, as
    arcface_torch reads them), taken per identity range when the header lists identities.
    ``property`` (beside the ``.rec``) gives the number of classes and the image size when present.
    Random access through the index with one shared read-only descriptor per process.
    """

    paper = "insightface training sets (ArcFace, Deng et al., CVPR 2019): MXNet RecordIO"

    def __init__(
        self,
        path: str | os.PathLike,
        idx: str | os.PathLike | None = None,
        image_size: int | None = None,
        skip_corrupt: bool = False,
    ):
        self.path, self.idx_path = _resolve_paths(Path(path), idx)
        self._file_id = rio.file_id(self.path)
        self.file_size = os.path.getsize(self.path)
        fd = rio.shared_fd(self.path, self._file_id)
        if self.idx_path.is_file():
            keys, offsets = rio.read_index(self.idx_path)
            self.indexed = True
        elif idx is not None:
            raise DataError(f"RecordIO index not found: {self.idx_path}")
        else:
            keys, offsets = rio.scan_index(fd, self.file_size, str(self.path))
            self.indexed = False
        if len(offsets) and offsets.max() >= self.file_size:
            bad = int(np.argmax(offsets >= self.file_size))
            raise DataError(
                f"{self.path} record {int(keys[bad])}: index offset {int(offsets[bad])} is past the "
                f"end of the file ({self.file_size} bytes); truncated .rec or wrong .idx"
            )
        self.num_records = len(keys)
        # where each record ends: the next record's offset in the file (or the file's end)
        order = np.argsort(offsets, kind="stable")
        ends = np.empty_like(offsets)
        ends[order] = np.append(offsets[order][1:], self.file_size)
        self._index_keys, self._index_offsets, self._index_ends = keys, offsets, ends
        self.header0: tuple[int, int] | None = self._read_header0()
        if self.header0 is not None:
            image_keys = np.arange(1, self.header0[0], dtype=np.int64)
        else:
            image_keys = np.sort(keys)
        self.keys = image_keys
        rows = self._rows(image_keys)
        self._offsets, self._ends = offsets[rows], ends[rows]
        self.identity_ranges = self._identity_ranges()
        labels = self._labels_from_ranges() if self.identity_ranges is not None else None
        if labels is None:
            labels = self._scan_labels()
        prop = rio.read_property(self.path.parent / rio.PROPERTY_NAME)
        self.property_classes: int | None = prop[0] if prop else None
        self.property_size: tuple[int, int] | None = prop[1] if prop else None
        super().__init__(labels, None, image_size, skip_corrupt)
        # the whole index is only needed while opening (about 24 bytes per record: Glint360K's 17M records)
        del self._index_keys, self._index_offsets, self._index_ends
        if self.property_classes is not None:
            self.num_classes = max(self.num_classes, int(self.property_classes))

    # ------------------------------------------------------------------------------ index lookups
    def _rows(self, wanted: np.ndarray) -> np.ndarray:
        """Index rows of record keys ``wanted`` (every one must be indexed)."""
        keys = self._index_keys
        if len(keys) and np.array_equal(keys, np.arange(len(keys))):  # the usual 0..N-1
            missing = wanted[(wanted < 0) | (wanted >= len(keys))]
            if len(missing):
                raise DataError(
                    f"{self.idx_path}: record {int(missing[0])} is not indexed "
                    f"({len(missing)} of {len(wanted)} records missing)"
                )
            return wanted.astype(np.int64)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], wanted), 0, max(len(keys) - 1, 0))
        found = len(keys) > 0 and keys[order][pos] == wanted
        if not np.all(found):
            first = wanted[~np.asarray(found, bool)][0] if len(keys) else wanted[0]
            raise DataError(f"{self.idx_path}: record {int(first)} is not indexed")
        return order[pos]

    def _record_data(self, offset: int, end: int, where: str) -> bytes:
        raw = rio.pread_exact(rio.shared_fd(self.path, self._file_id), int(end - offset), int(offset))
        return rio.decode_record(raw, where)[0]

    def _read_key(self, key: int) -> tuple[float | np.ndarray, int, int, bytes]:
        row = self._rows(np.asarray([key], np.int64))[0]
        where = f"{self.path} record {key}"
        data = self._record_data(self._index_offsets[row], self._index_ends[row], where)
        return rio.unpack_image_record(data, where)

    def _read_header0(self) -> tuple[int, int] | None:
        if not len(self._index_keys) or not (self._index_keys == 0).any():
            return None
        label, _, _, _ = self._read_key(0)
        if not isinstance(label, np.ndarray):
            return None  # no header record: record 0 is an image
        if len(label) < 2 or not (1 <= label[0] <= label[1]) or label[0] != int(label[0]) or label[1] != int(label[1]):
            raise DataError(
                f"{self.path} record 0: header record label {label[:4].tolist()} is not "
                "(first identity record, end of identity records)"
            )
        return int(label[0]), int(label[1])

    # --------------------------------------------------------------------------------- labels
    def _identity_ranges(self) -> np.ndarray | None:
        """``[num_ids, 2]`` image-record ranges from the identity records (None when there are none)."""
        if self.header0 is None or self.header0[1] == self.header0[0]:
            return None
        ids = np.arange(self.header0[0], self.header0[1], dtype=np.int64)
        rows = self._rows(ids)
        head = rio.gather_headers(self.path, self._index_offsets[rows])
        self._check_heads(head, self._index_offsets[rows], lambda j: f"{self.path} record {int(ids[j])}")
        if (head["cflag"] != 0).any() or (head["flag"] < 2).any():
            return None  # unusual identity records: read every image's label instead
        ranges = np.stack([head["vec0"], head["vec1"]], 1).astype(np.int64)
        return ranges

    def _labels_from_ranges(self) -> np.ndarray | None:
        """Labels per identity range (each range's first and last image must agree); None when the
        ranges do not tile the image records in order."""
        ranges = self.identity_ranges
        n = len(self.keys)
        if (
            ranges is None
            or not len(ranges)
            or ranges[0, 0] != 1
            or ranges[-1, 1] != n + 1
            or (ranges[:, 1] <= ranges[:, 0]).any()
            or (ranges[1:, 0] != ranges[:-1, 1]).any()
        ):
            return None
        first, last = ranges[:, 0] - 1, ranges[:, 1] - 2  # sample positions of the records
        head = rio.gather_headers(self.path, self._offsets[np.concatenate([first, last])])
        lab = self._header_labels(head, np.concatenate([first, last]))
        if lab is None:
            return None
        a, b = lab[: len(first)], lab[len(first) :]
        if (a != b).any():
            return None
        return np.repeat(a, ranges[:, 1] - ranges[:, 0])

    def _check_heads(self, head: dict[str, np.ndarray], offsets: np.ndarray, name: Any) -> None:
        """Every gathered record starts with the magic and fits in the file (else: the first bad one, named)."""
        bad = np.flatnonzero(head["magic"] != rio.MAGIC)
        if len(bad):
            raise DataError(
                f"{name(bad[0])}: bad record magic 0x{int(head['magic'][bad[0]]):08x}; corrupt .rec or wrong .idx"
            )
        end = offsets + 8 + head["length"].astype(np.int64)
        cut = np.flatnonzero(end > self.file_size)
        if len(cut):
            raise DataError(
                f"{name(cut[0])}: truncated (the record needs {int(end[cut[0]])} bytes, the file has {self.file_size})"
            )

    def _header_labels(self, head: dict[str, np.ndarray], positions: np.ndarray) -> np.ndarray | None:
        """Integer labels from gathered headers; records split by the writer are read whole."""
        self._check_heads(head, self._offsets[positions], lambda j: self.describe_item(int(positions[j])))
        label = np.where(head["flag"] > 0, head["vec0"], head["label"]).astype(np.float64)
        tiny = head["length"] < rio.HEADER.size + 4 * np.minimum(head["flag"], 1)
        odd = np.flatnonzero((head["cflag"] != 0) | tiny)
        for j in odd:  # split or tiny records: parse them properly
            value, _, _, _ = self._unpack(int(positions[j]))
            label[j] = value if not isinstance(value, np.ndarray) else (value[0] if len(value) else np.nan)
        wrong = np.flatnonzero(~np.isfinite(label) | (label != np.round(label)) | (label < 0))
        if len(wrong):
            i = int(positions[wrong[0]])
            raise DataError(f"{self.describe_item(i)}: label {label[wrong[0]]} is not a class index")
        return label.astype(np.int64)

    def _scan_labels(self) -> np.ndarray:
        positions = np.arange(len(self.keys), dtype=np.int64)
        head = rio.gather_headers(self.path, self._offsets)
        labels = self._header_labels(head, positions)
        assert labels is not None
        return labels

    # -------------------------------------------------------------------------------- samples
    def describe_item(self, index: int) -> str:
        return f"{self.path} record {int(self.keys[index])}"

    def _unpack(self, index: int) -> tuple[float | np.ndarray, int, int, bytes]:
        where = self.describe_item(index)
        return rio.unpack_image_record(self._record_data(self._offsets[index], self._ends[index], where), where)

    def read_raw(self, index: int) -> bytes:
        offset, end = int(self._offsets[index]), int(self._ends[index])
        raw = rio.pread_exact(rio.shared_fd(self.path, self._file_id), end - offset, offset)
        if len(raw) >= _PLAIN.size:  # the usual record: whole (cflag 0), scalar label: one slice
            magic, lrec, flag = _PLAIN.unpack_from(raw)
            stop = 8 + (lrec & _LENGTH_MASK)
            if magic == rio.MAGIC and lrec >> 29 == 0 and flag == 0 and _PLAIN.size + 20 < stop <= len(raw):
                return raw[8 + rio.HEADER.size : stop]
        image = self._unpack(index)[3]
        if not image:
            raise DataError(f"{self.describe_item(index)}: record holds no image bytes")
        return image

    def record_header(self, index: int) -> dict[str, Any]:
        """The stored header of sample ``index``: ``label`` (float or vector), ``id``, ``id2``."""
        label, key, id2, _ = self._unpack(index)
        return {"label": label, "id": key, "id2": id2}

    def close(self) -> None:
        rio.close_fd(self.path)

    def __repr__(self) -> str:
        return f"RecordIODataset({str(self.path)!r}, {len(self)} images)"
