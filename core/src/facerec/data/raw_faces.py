"""Raw photos -> aligned face chips: detect, align to a template, write a folder or LMDB, list failures.

The engine of ``facerun data align``. A photo folder is either one sub-folder per identity (labels
by sorted folder name, like :class:`~facerec.data.formats.ImageFolder`) or flat (unlabelled, -1).
Photos are read in chunks; each chunk is decoded, detected in batches of same-sized images, aligned
with :mod:`facerec.data.align`, JPEG-encoded and committed through
:class:`~facerec.data.writers.ChunkedOutput`, so a killed run resumes from its last chunk.

Nothing is dropped silently: every photo that cannot be read, or holds no face, is a row
``path,reason`` of ``OUT.failures.csv`` beside the output. The output records what it was aligned
to: an LMDB holds ``__template__`` (the template name, UTF-8) and ``__align__`` (JSON); a folder
holds ``facerec-align.json`` (key ``template``, and the same details).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from ..api import Detections, Detector
from ..errors import DataError, ParameterError
from . import align
from .decode import decode_uint8, encode_jpeg, read_bytes
from .formats.lists import ALIGN_SIDECAR, _is_image_file, folder_template
from .writers import ChunkedOutput

SIDECAR = ALIGN_SIDECAR
TEMPLATE_KEY = b"__template__"
ALIGN_KEY = b"__align__"
SELECT = ("largest", "all")
#: Pixels per detection call: a chunk of large photos is detected in pieces of at most this many.
DETECT_PIXELS = 1 << 24
#: Decoded pixels per chunk: a chunk of large photos closes early (about 200 MB of 8-bit RGB).
CHUNK_PIXELS = 1 << 26


@attrs.frozen
class PhotoFolder:
    """The photos under a root: paths relative to it, labels, identity names (empty when flat)."""

    root: Path
    files: tuple[str, ...]
    labels: tuple[int, ...]
    identities: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f, label in zip(self.files, self.labels):
            h.update(f"{f}\t{label}\n".encode())
        return h.hexdigest()


def scan_photos(root: str | os.PathLike) -> PhotoFolder:
    """Find the photos under ``root``: identity sub-folders when it has any, else a flat folder.

    With identity sub-folders, photos lying directly in ``root`` belong to no identity: they are an
    error naming the first one (move them into a folder), never ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"photo folder not found: {root}")
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and _is_image_file(p))
    files: list[str] = []
    labels: list[int] = []
    if subdirs:
        if loose:
            raise DataError(
                f"{root / loose[0]} lies beside the identity folders of {root} "
                f"({len(loose)} such images); move them into an identity folder"
            )
        for label, name in enumerate(subdirs):
            for f in sorted(p for p in (root / name).rglob("*") if p.is_file() and _is_image_file(p)):
                files.append(f.relative_to(root).as_posix())
                labels.append(label)
    else:
        files, labels = loose, [-1] * len(loose)
    if not files:
        raise DataError(f"no images found in {root}")
    return PhotoFolder(root, tuple(files), tuple(labels), tuple(subdirs))


@attrs.frozen
class AlignResult:
    """What ``align_photos`` produced."""

    path: Path
    failures_csv: Path
    images: int
    faces: int
    failed: int
    identities: int
    resumed_from: int
    template: str


def _choose(found: Detections, select: str) -> Detections:
    return found.largest() if select == "largest" else found


def _failure_csv(rows: Sequence[Sequence[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "reason"])
    w.writerows(rows)
    return buf.getvalue().encode()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _decode(
    folder: PhotoFolder, start: int, count: int, display: Callable[[str], str]
) -> tuple[range, list[int], list[torch.Tensor], list[list[str]]]:
    """Decode up to ``count`` photos from ``start``, fewer when they exceed CHUNK_PIXELS."""
    ok, images, failed = [], [], []
    pixels = 0
    stop = min(start + count, len(folder.files))
    for i in range(start, stop):
        rel = folder.files[i]
        try:
            images.append(decode_uint8(read_bytes(folder.root / rel), display(rel)))
            ok.append(i)
            pixels += images[-1].shape[1] * images[-1].shape[2]
        except DataError as exc:  # the row names the file; the reason need not repeat it
            failed.append([display(rel), str(exc).replace(f" {display(rel)}", "", 1)])
        if pixels >= CHUNK_PIXELS:
            stop = i + 1
            break
    return range(start, stop), ok, images, failed


def _detect(detector: Detector, images: list[torch.Tensor]) -> list[Detections]:
    """Detect same-sized images together, in pieces of at most DETECT_PIXELS."""
    out: list[Detections | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    for shape, members in groups.items():
        per_call = max(1, DETECT_PIXELS // (shape[1] * shape[2]))
        for lo in range(0, len(members), per_call):
            part = members[lo : lo + per_call]
            for i, det in zip(part, detector.detect(torch.stack([images[i] for i in part]))):
                out[i] = det
    return [d if d is not None else Detections.empty() for d in out]


def _align(
    images: list[torch.Tensor], faces: list[tuple[int, torch.Tensor]], template: str, size: int | None
) -> list[torch.Tensor]:
    """Chips for ``(image position, landmarks [5, 2])`` pairs, warped per group of same-sized images."""
    chips: list[torch.Tensor | None] = [None] * len(faces)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, (i, _) in enumerate(faces):
        groups.setdefault(tuple(images[i].shape), []).append(k)
    for shape, members in groups.items():
        per_call = max(1, DETECT_PIXELS // (shape[1] * shape[2]))
        for lo in range(0, len(members), per_call):
            part = members[lo : lo + per_call]
            batch = torch.stack([images[faces[k][0]] for k in part]).float().div_(255.0)
            landmarks = torch.stack([faces[k][1] for k in part])
            for k, chip in zip(part, align.align(batch, landmarks, template, size)):
                chips[k] = chip
    return chips  # type: ignore[return-value]


def align_photos(
    root: str | os.PathLike,
    out: str | os.PathLike,
    template: str,
    detector: Detector,
    *,
    detector_name: str = "",
    detector_params: dict[str, Any] | None = None,
    fmt: str | None = None,
    select: str = "largest",
    size: int | None = None,
    chunk: int = 32,
    quality: int = 95,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> AlignResult:
    """Detect, align and write every photo under ``root``; see the module doc. ``fmt`` defaults to
    ``lmdb`` for an ``.lmdb`` output and ``folder`` otherwise."""
    tpl = align.get_template(template)  # unknown names fail here, before any work
    if select not in SELECT:
        raise ParameterError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
    if not 1 <= quality <= 100:
        raise ParameterError(f"JPEG quality must be in 1..100, got {quality}")
    out = Path(out)
    fmt = fmt or ("lmdb" if out.suffix.lower() in (".lmdb", ".mdb") else "folder")
    folder = scan_photos(root)
    if fmt == "folder" and not folder.identities:
        raise DataError(
            f"{folder.root} has no identity sub-folders, and a folder output needs identities; "
            f"write an LMDB (--out NAME.lmdb) or put the photos into one folder per identity"
        )
    shown = str(root)

    def display(rel: str) -> str:
        return os.path.join(shown, rel)

    job = {
        "task": "align",
        "source": str(folder.root.resolve()),
        "files": len(folder.files),
        "fingerprint": folder.fingerprint,
        "template": tpl.name,
        "size": size or tpl.size,
        "detector": detector_name,
        "detector_params": json.dumps(detector_params or {}, sort_keys=True, default=str),
        "select": select,
        "quality": quality,
    }
    output = ChunkedOutput(out, fmt, job, overwrite)
    total = len(folder.files)
    failures = output.skipped
    while output.done < total:
        indices, ok, images, failed = _decode(folder, output.done, chunk, display)
        found = _detect(detector, images) if images else []
        faces: list[tuple[int, torch.Tensor]] = []
        owners: list[int] = []
        for pos, (i, det) in enumerate(zip(ok, found)):
            det = _choose(det, select)
            if len(det) == 0:
                failed.append([display(folder.files[i]), "no face found"])
            for lm in det.landmarks:
                faces.append((pos, lm))
                owners.append(i)
        chips = _align(images, faces, tpl.name, size) if faces else []
        written = output.written
        items = [
            (written + k, encode_jpeg(chip, quality), folder.labels[i], -1, None)
            for k, (chip, i) in enumerate(zip(chips, owners))
        ]
        # failures in source order, whichever step found them
        order = {display(f): n for n, f in enumerate(folder.files[indices.start : indices.stop])}
        failures = failures + sorted(failed, key=lambda row: order[row[0]])
        output.commit(items, indices.stop, failures)
        if progress is not None:
            progress(indices.stop, total)
    csv_path = out.with_name(out.name + ".failures.csv")
    _write_atomic(csv_path, _failure_csv(failures))
    if output.written == 0:
        output.discard()
        raise DataError(f"no face found in any of the {total} images of {folder.root}; reasons in {csv_path}")
    meta = {
        "template": tpl.name,
        "size": size or tpl.size,
        "detector": detector_name,
        "detector_params": detector_params or {},
        "select": select,
        "source": str(folder.root.resolve()),
        "identities": list(folder.identities),
        "images": total,
        "faces": output.written,
        "failed": len(failures),
        "failures_csv": csv_path.name,
    }
    blob = json.dumps(meta, indent=2, default=str).encode()
    output.finish(records={TEMPLATE_KEY: tpl.name.encode(), ALIGN_KEY: blob}, files={SIDECAR: blob})
    return AlignResult(
        path=out,
        failures_csv=csv_path,
        images=total,
        faces=output.written,
        failed=len(failures),
        identities=len(folder.identities),
        resumed_from=output.resumed_from,
        template=tpl.name,
    )


def read_template(path: str | os.PathLike) -> str | None:
    """The template an aligned output was written for (``__template__`` / ``facerec-align.json``), if any."""
    p = Path(path)
    if p.is_dir() and (p / SIDECAR).is_file():
        return folder_template(p)
    if p.is_file() or (p.is_dir() and (p / "data.mdb").is_file()):
        import lmdb

        from .formats import shared_reader

        try:  # the process's one reader of the file (a dataset may have it open already)
            with shared_reader(p).begin() as txn:
                raw = txn.get(TEMPLATE_KEY)
        except lmdb.Error as exc:
            raise DataError(f"{p}: not a readable LMDB ({exc})") from None
        return raw.decode() if raw is not None else None
    return None
