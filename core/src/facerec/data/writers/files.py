"""The ``folder`` and ``list`` layouts: one image file per sample, a list file, the facerec marker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...api import MODALITIES
from ..decode import JPEG_MAGIC, PNG_MAGIC
from .journal import _JOURNAL, JournalledWriter
from .output import MARKER, _write_atomic


LIST_NAME = "list.txt"


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
            marker["modality"] = (
                "column 3 (0 = VIS, 1 = NIR)"
                if self.fmt == "list"
                else "file names end in _VIS / _NIR (read back with modality_rule='_(NIR|VIS)\\.')"
            )
        _write_atomic(self.tmp / MARKER, (json.dumps(marker) + "\n").encode())
        (self.tmp / _JOURNAL).unlink()
        (self.tmp / ".facerec-rows.bin").unlink()
