"""The VGGFace2 dataset layout: an image list (with or without the ``train/``/``test/`` prefix) under a root,
labels from ``identity_meta.csv`` when given, otherwise from the sorted class ids of the list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from facerec.api import Dataset
from facerec.errors import DataError

from .meta import IdentityMeta, read_identity_meta, read_image_list


def load_canonical(path: Path, size: int) -> Tensor:
    """Image file -> canonical [3, size, size] RGB in [0, 1]: shorter side to ``size`` (PIL bilinear, as the
    original's Resize), then a centre square crop (rounded as torchvision's CenterCrop)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # the original broke on grey/RGBA files
            w, h = im.size
            if w <= h:
                nw, nh = size, int(size * h / w)
            else:
                nw, nh = int(size * w / h), size
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class VGGFace2List(Dataset):
    """VGGFace2 image list under a root (split prefix optional); labels from identity_meta.csv if given.

    ``image_size`` is the side of the canonical square (256: the models resize to 256 and centre-crop 224).
    Without ``meta_file`` the labels are the sorted class ids of the list, 0..n-1. ``split`` is prepended to
    lines that lack it; by default it is guessed from the first line (``root/line``, else ``root/train/line``,
    else ``root/test/line``).
    """

    def __init__(
        self, root: str, list_file: str, meta_file: str | None = None, image_size: int = 256, split: str | None = None
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset root {self.root} is not a directory")
        self.entries = read_image_list(list_file)
        self.image_size = int(image_size)
        self.prefix = self._prefix(split)
        self.meta: IdentityMeta | None = read_identity_meta(meta_file) if meta_file else None
        if self.meta is not None:
            unknown = [e for e in self.entries if e.class_id not in self.meta.labels]
            if unknown:
                raise DataError(
                    f"{list_file}: class id {unknown[0].class_id!r} (of {unknown[0].path!r}) is not in "
                    f"{meta_file}; {len(unknown)} lines affected"
                )
            self._labels = torch.tensor([self.meta.labels[e.class_id] for e in self.entries])
            self.num_classes = len(self.meta.labels)
            self.num_train_classes = self.meta.num_train
        else:
            ids = sorted({e.class_id for e in self.entries})
            index = {c: i for i, c in enumerate(ids)}
            self._labels = torch.tensor([index[e.class_id] for e in self.entries])
            self.num_classes = self.num_train_classes = len(ids)

    def _prefix(self, split: str | None) -> str:
        if split is not None:
            return split.strip("/") + "/" if split else ""
        first = self.entries[0].path
        for prefix in ("", "train/", "test/"):
            if (self.root / (prefix + first)).is_file():
                return prefix
        raise DataError(f"image {first!r} of the list is not under {self.root} (nor its train/ or test/ folders)")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> Tensor:
        return self._labels

    @property
    def paths(self) -> list[str]:
        return [e.path for e in self.entries]

    def file(self, index: int) -> Path:
        line = self.entries[index].path
        direct = self.root / line
        return direct if not self.prefix or line.startswith(self.prefix) else self.root / (self.prefix + line)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": load_canonical(self.file(index), self.image_size), "label": int(self._labels[index])}
