"""Real dataset formats: image lists, image folders and LMDB in the Vec2Face/HSFace layout.

Every dataset yields canonical samples (``image`` float ``[3,H,W]`` RGB in [0,1], ``label``, and
``modality``/``feature`` where the source has them), gives ``labels`` without decoding any image,
and exposes ``read_raw(i)`` (the stored image bytes) so converters copy JPEGs without re-encoding.
``template`` names the alignment template the images are aligned to (None: not declared); an LMDB
written by ``facerun data align`` declares it in its ``__template__`` record.
Corrupt or missing images raise :class:`DataError` naming the path or LMDB key; with
``skip_corrupt=True`` the next good sample is returned instead and ``skipped`` counts the bad ones.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..api import MODALITIES, Dataset
from ..errors import DataError, ParameterError
from .decode import IMAGE_SUFFIXES, decode_uint8, looks_like_image, read_bytes, to_canonical

#: Suffixes never taken for images when scanning folders (sidecar files beside the faces).
_NOT_IMAGES = frozenset({".txt", ".csv", ".json", ".npy", ".npz", ".md", ".py", ".mdb", ".lock", ".pkl", ".mat"})


class _ImageDataset(Dataset):
    """Shared sample logic: decode, optional resize, skip-corrupt substitution, batched fetch."""

    image_size: int | None = None
    skip_corrupt: bool = False
    template: str | None = None

    def __init__(self, labels: np.ndarray, modality: np.ndarray | None, image_size: int | None,
                 skip_corrupt: bool, template: str | None = None):
        if image_size is not None and int(image_size) <= 0:
            raise ParameterError(f"image_size must be positive, got {image_size}")
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ParameterError(f"template must name an alignment template, got {template!r}")
        self.template = template
        self._labels = np.asarray(labels, dtype=np.int64)
        self._modality = None if modality is None else np.asarray(modality, dtype=np.int64)
        self.image_size = None if image_size is None else int(image_size)
        self.skip_corrupt = bool(skip_corrupt)
        self.num_classes = int(self._labels.max()) + 1 if len(self._labels) and self._labels.max() >= 0 else 0
        self.skipped: set[int] = set()  # indices found corrupt in this process

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> Tensor:
        return torch.from_numpy(self._labels.copy())

    @property
    def modality(self) -> Tensor | None:
        return None if self._modality is None else torch.from_numpy(self._modality.copy())

    # -- subclasses provide these ---------------------------------------------------------------
    def read_raw(self, index: int) -> bytes:
        """The stored image bytes of sample ``index`` (no decoding)."""
        raise NotImplementedError

    def describe_item(self, index: int) -> str:
        """How an error message names sample ``index`` (its path or LMDB key)."""
        raise NotImplementedError

    def _load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """Decoded uint8 image of sample ``index`` and its extra fields (e.g. ``feature``)."""
        return decode_uint8(self.read_raw(index), self.describe_item(index)), {}

    # -- samples --------------------------------------------------------------------------------
    def _resolve(self, index: int) -> tuple[int, Tensor, dict[str, Any]]:
        """Decode ``index``, or with ``skip_corrupt`` the next decodable sample."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        index %= n
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                return (i, *self._load(i))
            except DataError:
                if not self.skip_corrupt:
                    raise
                self.skipped.add(i)
        raise DataError(f"every sample of {self!r} is corrupt")

    def _item(self, i: int, image: Tensor, extras: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"image": image, "label": int(self._labels[i])}
        if self._modality is not None:
            item["modality"] = int(self._modality[i])
        item.update(extras)
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, u8, extras = self._resolve(int(index))
        return self._item(i, to_canonical(u8, self.image_size), extras)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Decode many samples and convert them to float in one batched op (``image`` is ``[B,3,H,W]``
        in channels-last memory when the images share a size)."""
        from torch.utils.data import default_collate

        resolved = [self._resolve(int(i)) for i in indices]
        shapes = {tuple(u8.shape) for _, u8, _ in resolved}
        if len(shapes) == 1:
            # Decoders hand out [3,H,W] views of interleaved HWC pixels: stacking them as HWC is one
            # memcpy each, where stacking as CHW is a stride-3 gather that costs more than the float
            # conversion. The batch stays channels-last ([B,3,H,W] with NHWC strides), the layout
            # facerec's inference and oneDNN convolutions run in anyway.
            hwc = torch.stack([u8.permute(1, 2, 0) for _, u8, _ in resolved])
            images = to_canonical(hwc.permute(0, 3, 1, 2), self.image_size)
        elif self.image_size is not None:
            images = torch.stack([to_canonical(u8, self.image_size) for _, u8, _ in resolved])
        else:
            raise DataError(f"images of different sizes {sorted(shapes)[:2]} in one batch; pass image_size")
        out = default_collate([self._item(i, torch.empty(0), extras) for i, _, extras in resolved])
        out["image"] = images
        return out


# ------------------------------------------------------------------------------------------------
# modality rules


def _modality_names(values: str | Sequence[str]) -> list[str]:
    names = [v.strip().upper() for v in (values.split(",") if isinstance(values, str) else values)]
    bad = [n for n in names if n not in MODALITIES]
    if bad or not names:
        raise ParameterError(f"modality_values must name {'/'.join(MODALITIES)} per column value, got {values!r}")
    return names


class ModalityRule:
    """Modality of a list line from a column or a regular expression (never a fixed substring).

    * an int (or digits): that whitespace column holds the modality; its text is ``VIS``/``NIR``
      or a number indexing ``values`` (DVG's ``path label domain`` with 0 = NIR, 1 = VIS is
      ``ModalityRule(2, "NIR,VIS")``);
    * a regex: searched in the path; with a group, the group's text is mapped as a column value;
      without one, a match means NIR and no match VIS.
    """

    def __init__(self, rule: int | str, values: str | Sequence[str] = "VIS,NIR"):
        self.values = _modality_names(values)
        self.column: int | None = None
        self.regex: re.Pattern[str] | None = None
        if isinstance(rule, int) or (isinstance(rule, str) and rule.strip().isdigit()):
            self.column = int(rule)
            if self.column < 1:
                raise ParameterError(f"modality_rule column must be >= 1 (column 0 is the path), got {rule}")
        else:
            try:
                self.regex = re.compile(str(rule))
            except re.error as exc:
                raise ParameterError(f"modality_rule {rule!r} is not a valid regular expression: {exc}") from None

    def _value(self, text: str, where: str) -> int:
        t = text.strip().upper()
        if t in MODALITIES:
            return MODALITIES.index(t)
        try:
            return MODALITIES.index(self.values[int(float(t))])
        except (ValueError, IndexError):
            raise DataError(f"{where}: modality value {text!r} is neither VIS/NIR nor an index into "
                            f"{','.join(self.values)}") from None

    def __call__(self, path: str, columns: Sequence[str], where: str) -> int:
        if self.column is not None:
            if self.column >= len(columns):
                raise DataError(f"{where}: no column {self.column} for the modality (line has {len(columns)})")
            return self._value(columns[self.column], where)
        assert self.regex is not None
        m = self.regex.search(path)
        if m is None:
            return 0
        if m.groups():
            return self._value(m.group(1) or "", where)
        return 1


# ------------------------------------------------------------------------------------------------
# image lists and folders


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


#: labels are class indices (-1: unlabelled); a class count beyond int32 is a typo, not a dataset
MAX_LABEL = 2**31 - 1


def _parse_label(token: str, where: str) -> int:
    """An integer label from a list column (``3``, ``3.0``), refusing nan, inf, fractions, huge values."""
    try:
        value = int(token)
    except ValueError:
        try:
            number = float(token)
        except ValueError:
            raise DataError(f"{where}: label {token!r} is not a number") from None
        if not math.isfinite(number) or number != int(number):
            raise DataError(f"{where}: label {token!r} is not an integer") from None
        value = int(number)
    if not -1 <= value <= MAX_LABEL:
        raise DataError(f"{where}: label {token!r} is out of range (-1 for unlabelled, else 0..{MAX_LABEL})")
    return value


class _FileList(_ImageDataset):
    """Samples that are image files: ``paths`` (absolute) with labels and optional modality."""

    def __init__(self, paths: list[str], labels: np.ndarray, modality: np.ndarray | None,
                 image_size: int | None, skip_corrupt: bool, rel: list[str], template: str | None = None):
        super().__init__(labels, modality, image_size, skip_corrupt, template)
        self.paths = paths
        self.relpaths = rel

    def read_raw(self, index: int) -> bytes:
        return read_bytes(self.paths[index])

    def describe_item(self, index: int) -> str:
        return self.paths[index]


class ImageList(_FileList):
    """Image list file: ``path label [domain]`` lines (DVG/DCR/VirFace variants), paths relative to root.

    A path may contain spaces (the trailing numeric tokens are the label and extra columns, as in
    VirFace); a line with no label gets -1. Blank lines and ``#`` comments are ignored. The
    modality comes from ``modality_rule`` (a column index or a regex, see :class:`ModalityRule`).
    """

    paper = "list formats of DVG-Face, DCR and VirFace"

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None,
                 modality_rule: int | str | None = None, modality_values: str = "VIS,NIR",
                 image_size: int | None = None, skip_corrupt: bool = False, template: str | None = None):
        self.list_path = Path(path)
        if not self.list_path.is_file():
            raise DataError(f"image list not found: {self.list_path}")
        self.root = Path(root) if root is not None else self.list_path.parent
        if not self.root.is_dir():
            raise DataError(f"image list root is not a directory: {self.root}")
        rule = ModalityRule(modality_rule, modality_values) if modality_rule not in (None, "") else None
        rel, labels, modality = [], [], []
        try:
            text = self.list_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.list_path}: not a UTF-8 text list ({exc.reason} at byte {exc.start})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tokens = line.split()
            where = f"{self.list_path} line {lineno}"
            n_num = 0  # trailing numeric columns (label, domain, ...); the rest is the path
            while n_num < len(tokens) - 1 and _is_number(tokens[len(tokens) - 1 - n_num]):
                n_num += 1
            path_tokens = tokens[: len(tokens) - n_num]
            if n_num == 0 and len(tokens) > 2 and _is_number(tokens[1]):
                path_tokens = tokens[:1]  # `path label NIR`: a textual column after the label
            relpath = " ".join(path_tokens)
            columns = [relpath, *tokens[len(path_tokens):]]
            label = _parse_label(columns[1], where) if len(columns) > 1 else -1
            rel.append(relpath)
            labels.append(label)
            if rule is not None:
                modality.append(rule(relpath, columns, where))
        if not rel:
            raise DataError(f"image list {self.list_path} has no entries")
        paths = [os.path.normpath(os.path.join(self.root, r)) for r in rel]
        super().__init__(paths, np.asarray(labels), np.asarray(modality) if rule is not None else None,
                         image_size, skip_corrupt, rel, template)

    def __repr__(self) -> str:
        return f"ImageList({str(self.list_path)!r}, {len(self)} images)"


def _is_image_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in _NOT_IMAGES or path.name.startswith("."):
        return False
    try:  # extension-less or unusual suffix (Yale: subject01.happy): sniff the signature
        with path.open("rb") as f:
            return looks_like_image(f.read(8))
    except OSError:
        return False


#: The file in which a folder written by ``facerun data align`` names its alignment template (JSON, key ``template``).
ALIGN_SIDECAR = "facerec-align.json"


def folder_template(root: Path) -> str | None:
    """The template named by ``root``'s :data:`ALIGN_SIDECAR`, or None when there is none."""
    sidecar = root / ALIGN_SIDECAR
    if not sidecar.is_file():
        return None
    try:
        name = json.loads(sidecar.read_text())["template"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{sidecar}: unreadable alignment record ({type(exc).__name__}: {exc})") from None
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{sidecar}: 'template' must name an alignment template, got {name!r}")
    return name.strip()


class ImageFolder(_FileList):
    """Image folder: one sub-folder per identity, labels by sorted folder name (torchvision order).

    With ``label_pattern`` (a regex) the folder may be flat instead: every image under ``root``
    is labelled by the pattern's first group (or whole match) in its relative path, e.g.
    ``subject(\\d+)`` for Yale faces; labels follow the sorted distinct values.
    ``modality_rule`` (a regex, see :class:`ModalityRule`) gives each image a modality from its relative
    path, e.g. ``_(NIR|VIS)\\.`` for the folders ``facerun generate`` writes with NIR-VIS generators.
    """

    def __init__(self, root: str | os.PathLike, image_size: int | None = None, skip_corrupt: bool = False,
                 label_pattern: str | None = None, template: str | None = None, modality_rule: str | None = None,
                 modality_values: str = "VIS,NIR"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        rel: list[str] = []
        names: list[str] = []
        if label_pattern:
            try:
                pattern = re.compile(label_pattern)
            except re.error as exc:
                raise ParameterError(f"label_pattern {label_pattern!r} is not a valid regex: {exc}") from None
            for f in sorted(p for p in self.root.rglob("*") if p.is_file() and _is_image_file(p)):
                r = f.relative_to(self.root).as_posix()
                m = pattern.search(r)
                if m is None:
                    raise DataError(f"{f}: label_pattern {label_pattern!r} does not match")
                rel.append(r)
                names.append(m.group(1) if m.groups() else m.group(0))
            self.classes = sorted(set(names))
        else:
            self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
            for name in self.classes:
                for f in sorted(p for p in (self.root / name).rglob("*") if p.is_file() and _is_image_file(p)):
                    rel.append(f.relative_to(self.root).as_posix())
                    names.append(name)
        if not rel:
            raise DataError(f"no images found in {self.root}" + ("" if label_pattern else
                            " (expected one sub-folder of images per identity)"))
        index = {c: i for i, c in enumerate(self.classes)}
        labels = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
        modality = None
        if modality_rule not in (None, ""):
            rule = ModalityRule(str(modality_rule), modality_values)
            if rule.regex is None:
                raise ParameterError(f"modality_rule {modality_rule!r}: a folder has no columns; give a regex "
                                     "searched in each image's path, e.g. '_(NIR|VIS)\\.'")
            modality = np.asarray([rule(r, [r], str(self.root / r)) for r in rel], dtype=np.int64)
        if template is None:  # a folder `facerun data align` wrote says its template in a sidecar file
            template = folder_template(self.root)
        super().__init__([str(self.root / r) for r in rel], labels, modality, image_size, skip_corrupt, rel, template)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} identities)"


# ------------------------------------------------------------------------------------------------
# LMDB (Vec2Face / HSFace layout)

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
        return lmdb.open(str(p), subdir=subdir, map_size=map_size, readahead=False, meminit=False,
                         max_dbs=0, sync=True, lock=True)
    return lmdb.open(str(p), subdir=subdir, readonly=True, lock=False, readahead=False, meminit=False,
                     max_readers=512)


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
        raise DataError(f"{where}: expected msgpack (image, [feature,] label), got {type(value).__name__}"
                        f"{' of length ' + str(len(value)) if isinstance(value, (list, tuple)) else ''}")
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

    def __init__(self, path: str | os.PathLike, mask: str | os.PathLike | np.ndarray | None = None,
                 image_size: int | None = None, skip_corrupt: bool = False, features: bool = True,
                 template: str | None = None):
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
                raise DataError(f"{where}: __keys__ lists {len(keys) if isinstance(keys, list) else '?'} "
                                f"records but __len__ says {length}")
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
            self.has_features = first is not None and features and \
                unpack_record(first, self._where(0))[1] is not None
        if labels is None:  # original files: read every record's label (no image read or decode)
            labels = np.empty(length, dtype=np.int64)
            with env.begin(buffers=True) as txn:
                for r in range(length):
                    view = txn.get(self._key(r))
                    if view is None:
                        raise DataError(f"{self._where(r)}: record listed in __keys__ is missing")
                    labels[r] = record_label(view, self._where(r))
        self.mask_path = None
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
                from ..filekind import kind, read_failure

                why = read_failure(self.mask_path, exc, "a .npy array")
                if why is None and kind(self.mask_path) in ("pickle", "torch-legacy"):
                    why = (f"{self.mask_path}: holds pickled objects, which the safe loader refuses (save the mask "
                           f"with numpy.save as a plain integer array)")
                raise DataError(f"mask {why or f'{self.mask_path} is not a valid .npy: {exc}'}") from None
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"mask {self.mask_path or '<array>'} must be a 1-D integer array of record indices, "
                            f"got {arr.dtype} {arr.shape}")
        if len(arr) and (arr.min() < 0 or arr.max() >= length):
            raise DataError(f"mask {self.mask_path or '<array>'} holds record index {int(arr.max())} "
                            f"outside 0..{length - 1}")
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


# ------------------------------------------------------------------------------------------------


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
        from .recordio_dataset import RecordIODataset

        cls: Any = RecordIODataset
    else:
        cls = {"lmdb": LMDBDataset, "folder": ImageFolder, "list": ImageList}[fmt]
    import inspect

    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ParameterError(f"{fmt} dataset {path} has no parameter {unknown[0]!r}; "
                             f"accepted: {', '.join(sorted(accepted - {'path', 'root'} | ({'root'} if fmt == 'list' else set())))}")
    return cls(path, **params)


__all__ = ["ImageList", "ImageFolder", "LMDBDataset", "ModalityRule", "detect_format", "open_dataset"]
