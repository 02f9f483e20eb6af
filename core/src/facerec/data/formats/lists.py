"""Image lists (a text file of ``path label`` lines) and image folders (one sub-folder per identity)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ...errors import DataError, ParameterError
from ..decode import IMAGE_SUFFIXES, looks_like_image, read_bytes
from .base import _ImageDataset
from .modality import ModalityRule


#: Suffixes never taken for images when scanning folders (sidecar files beside the faces).
_NOT_IMAGES = frozenset({".txt", ".csv", ".json", ".npy", ".npz", ".md", ".py", ".mdb", ".lock", ".pkl", ".mat"})


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

    def __init__(
        self,
        paths: list[str],
        labels: np.ndarray,
        modality: np.ndarray | None,
        image_size: int | None,
        skip_corrupt: bool,
        rel: list[str],
        template: str | None = None,
    ):
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

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        modality_rule: int | str | None = None,
        modality_values: str = "VIS,NIR",
        image_size: int | None = None,
        skip_corrupt: bool = False,
        template: str | None = None,
    ):
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
            columns = [relpath, *tokens[len(path_tokens) :]]
            label = _parse_label(columns[1], where) if len(columns) > 1 else -1
            rel.append(relpath)
            labels.append(label)
            if rule is not None:
                modality.append(rule(relpath, columns, where))
        if not rel:
            raise DataError(f"image list {self.list_path} has no entries")
        paths = [os.path.normpath(os.path.join(self.root, r)) for r in rel]
        super().__init__(
            paths,
            np.asarray(labels),
            np.asarray(modality) if rule is not None else None,
            image_size,
            skip_corrupt,
            rel,
            template,
        )

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

    #: True when the labels only number the files (a flat folder of faces opened by ``facerun extract``)
    unlabelled: bool = False

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int | None = None,
        skip_corrupt: bool = False,
        label_pattern: str | None = None,
        template: str | None = None,
        modality_rule: str | None = None,
        modality_values: str = "VIS,NIR",
    ):
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
            raise DataError(
                f"no images found in {self.root}"
                + ("" if label_pattern else " (expected one sub-folder of images per identity)")
            )
        index = {c: i for i, c in enumerate(self.classes)}
        labels = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
        modality = None
        if modality_rule not in (None, ""):
            rule = ModalityRule(str(modality_rule), modality_values)
            if rule.regex is None:
                raise ParameterError(
                    f"modality_rule {modality_rule!r}: a folder has no columns; give a regex "
                    "searched in each image's path, e.g. '_(NIR|VIS)\\.'"
                )
            modality = np.asarray([rule(r, [r], str(self.root / r)) for r in rel], dtype=np.int64)
        if template is None:  # a folder `facerun data align` wrote says its template in a sidecar file
            template = folder_template(self.root)
        super().__init__([str(self.root / r) for r in rel], labels, modality, image_size, skip_corrupt, rel, template)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} identities)"
