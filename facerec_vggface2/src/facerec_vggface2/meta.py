"""VGGFace2 ``identity_meta.csv`` and image lists, parsed as the original repository does (but with errors
that name the file and line instead of pandas tracebacks).

identity_meta.csv: header ``Class_ID, Name, Sample_Num, Flag, Gender``, fields separated by a comma followed
by whitespace (``sep=',\\s+'``; names may contain bare commas), names quoted. Labels: rows with Flag 1
(training split) get 0..n_train-1 in file order, rows with Flag 0 (test split) get n_train.. after them.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from facerec.errors import DataError

_SEP = re.compile(r",\s+")
_REQUIRED = ("Class_ID", "Flag")


@attrs.frozen
class IdentityMeta:
    """Class ids in file order, their labels, and how many belong to the training split."""

    class_ids: tuple[str, ...]
    labels: dict[str, int]
    names: dict[str, str]
    num_train: int

    def is_train(self, class_id: str) -> bool:
        return self.labels[class_id] < self.num_train


def read_identity_meta(path: str | Path) -> IdentityMeta:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read identity meta file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"identity meta file {path} is not UTF-8 text") from None
    if not lines:
        raise DataError(f"identity meta file {path} is empty")
    header = [h.strip().strip('"') for h in _SEP.split(lines[0].strip())]
    for col in _REQUIRED:
        if col not in header:
            raise DataError(f"{path}:1: header has no column {col!r} (got {', '.join(header)})")
    ci, fi = header.index("Class_ID"), header.index("Flag")
    ni = header.index("Name") if "Name" in header else None
    train, test, names = [], [], {}
    seen: set[str] = set()
    for lineno, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = [f.strip().strip('"') for f in _SEP.split(raw.strip())]
        if len(fields) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} fields separated by ', ', got {len(fields)}")
        cid, flag = fields[ci], fields[fi]
        if flag not in ("0", "1"):
            raise DataError(f"{path}:{lineno}: Flag must be 0 (test) or 1 (train), got {flag!r}")
        if cid in seen:
            raise DataError(f"{path}:{lineno}: class id {cid!r} appears twice")
        seen.add(cid)
        (train if flag == "1" else test).append(cid)
        if ni is not None:
            names[cid] = fields[ni]
    labels = {cid: i for i, cid in enumerate(train + test)}
    return IdentityMeta(class_ids=tuple(train + test), labels=labels, names=names, num_train=len(train))


@attrs.frozen
class ImageListEntry:
    path: str  # as written in the list
    class_id: str


def read_image_list(path: str | Path) -> list[ImageListEntry]:
    """``[split/]class_id/image.jpg`` per line; the class id is the image's folder, so lines with and
    without the split prefix both work (the original needed the prefix)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read image list {path}: {exc.strerror or exc}") from None
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.replace("\\", "/").split("/")
        if len(parts) < 2 or not parts[-2]:
            raise DataError(f"{path}:{lineno}: expected [split/]class_id/file, got {line!r}")
        entries.append(ImageListEntry(path=line, class_id=parts[-2]))
    if not entries:
        raise DataError(f"image list {path} has no entries")
    return entries
