"""The DCR data root layout (CASIA-WebFace list, LFW ``lfw_test_pair.txt``, SCface folders).

```
ROOT/Casia/120x120_120/...       ROOT/Casia/casia_cleaned_list.txt   ("relpath subject_id")
ROOT/LFW/LFW_120x120_120/...     ROOT/LFW/lfw_test_pair.txt          ("rel1 rel2 label", 1 = same)
ROOT/SCface/mugshot_frontal_cropped_all/NNN_frontal.JPG
ROOT/SCface/surveillance_cameras_distance_{1,2,3}/NNN_camK_D.jpg
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
from facerec.api import Dataset
from facerec.data.formats import ImageList
from facerec.errors import DataError, ParameterError
from torch import Tensor

SCFACE_SUBJECTS = 130
SCFACE_TRAIN_SUBJECTS = 50
SCFACE_DISTANCES = (1, 2, 3)
SCFACE_CAMERAS = (1, 2, 3, 4, 5)


def _sub(root: str | os.PathLike, name: str, marker: str) -> Path:
    """``root`` may be the DCR data root (with ``name/``) or the dataset folder itself."""
    root = Path(root)
    if (root / name / marker).exists():
        return root / name
    if (root / marker).exists():
        return root
    raise DataError(f"{root}: no {name}/{marker} (expected the DCR data root layout)")


class _Subset(Dataset):
    """A selection of another dataset's samples (keeps labels and batched fetching)."""

    def __init__(self, base: Dataset, indices: np.ndarray, num_classes: int):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_classes = num_classes
        self._labels = base.labels[torch.from_numpy(self.indices)]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> Tensor:
        return self._labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.base[int(self.indices[index])]

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        return self.base.batch([int(self.indices[int(i)]) for i in indices])


def held_out_subjects(subset: int, num_classes: int) -> tuple[int, int]:
    """The original's 10-fold subject split: fold ``subset`` holds ids in [k/10 C, (k/10 + 0.1) C)."""
    lo = int(subset / 10 * num_classes)
    hi = int((subset / 10 + 0.1) * num_classes)
    return lo, hi


class CasiaWebFace(_Subset):
    """CASIA-WebFace in the DCR layout with the 10-fold subject split (``subset`` 0..9; 11 = all)."""

    paper = "DCR (CS7319E1G16) CASIA-WebFace layout"

    def __init__(
        self,
        root: str | os.PathLike,
        split: Literal["train", "val"] = "train",
        subset: int = 11,
        image_size: int = 120,
        list_file: str = "casia_cleaned_list.txt",
        image_folder: str = "120x120_120",
        num_classes: int | None = None,
        skip_corrupt: bool = False,
    ):
        folder = _sub(root, "Casia", list_file)
        base = ImageList(
            folder / list_file, root=folder / image_folder, image_size=image_size, skip_corrupt=skip_corrupt
        )
        labels = base.labels.numpy()
        if (labels < 0).any():
            raise DataError(f"{folder / list_file}: every line needs a subject id")
        total = int(num_classes) if num_classes else int(labels.max()) + 1
        if split not in ("train", "val"):
            raise ParameterError(f"split must be train or val, got {split!r}")
        if subset in (None, 11, -1):
            if split == "val":
                raise ParameterError("subset 11 trains on every subject; pick subset 0..9 for a val split")
            keep = np.arange(len(labels))
        elif 0 <= int(subset) <= 9:
            lo, hi = held_out_subjects(int(subset), total)
            inside = (labels >= lo) & (labels < hi)
            keep = np.flatnonzero(inside if split == "val" else ~inside)
        else:
            raise ParameterError(f"subset must be 0..9 (held-out fold) or 11 (all), got {subset}")
        self.image_size = image_size
        super().__init__(base, keep, total)


@attrs.frozen
class PairList:
    """Pairs of ``rel1 rel2 label`` lines, file order kept (the folds are contiguous slices)."""

    first: list[Path]
    second: list[Path]
    same: Tensor
    skipped: int = 0


def read_pair_list(path: str | os.PathLike, image_root: str | os.PathLike, *, skip_missing: bool = False) -> PairList:
    """Parse ``lfw_test_pair.txt``; bad lines name the file and line; missing images are an error
    unless ``skip_missing`` (the original drops such pairs silently; here they are counted)."""
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise DataError(f"pair list not found: {path}")
    first, second, same = [], [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) != 3 or tokens[2] not in ("0", "1"):
            raise DataError(f"{path} line {lineno}: expected 'rel1 rel2 label' with label 0 or 1, got {line.strip()!r}")
        first.append(image_root / tokens[0])
        second.append(image_root / tokens[1])
        same.append(tokens[2] == "1")
    if not first:
        raise DataError(f"pair list {path} has no pairs")
    present = np.array([a.is_file() and b.is_file() for a, b in zip(first, second)])
    if not present.all():
        bad = [str(p) for a, b in zip(first, second) for p in (a, b) if not p.is_file()]
        if not skip_missing:
            raise DataError(
                f"{int((~present).sum())} pairs of {path} have missing images, e.g. {bad[0]}; "
                "pass skip_missing=True to drop them"
            )
    keep = np.flatnonzero(present)
    return PairList(
        [first[i] for i in keep],
        [second[i] for i in keep],
        torch.tensor([same[i] for i in keep]),
        skipped=int((~present).sum()),
    )


_MUGSHOT = re.compile(r"^(\d{3})_frontal\.(jpe?g|png)$", re.IGNORECASE)
_SURV = re.compile(r"^(\d{3})_cam(\d)_(\d)\.(jpe?g|png)$", re.IGNORECASE)


@attrs.frozen
class SCfaceImage:
    path: Path
    subject: int  # label = NNN - 1
    distance: int  # 0 = mugshot
    camera: int  # 0 = mugshot


def scan_scface(root: str | os.PathLike) -> list[SCfaceImage]:
    """Every SCface image of the layout, sorted by (subject, distance, camera)."""
    folder = _sub(root, "SCface", "mugshot_frontal_cropped_all")
    out = []
    for name in sorted(os.listdir(folder / "mugshot_frontal_cropped_all")):
        m = _MUGSHOT.match(name)
        if m:
            out.append(SCfaceImage(folder / "mugshot_frontal_cropped_all" / name, int(m.group(1)) - 1, 0, 0))
    for d in SCFACE_DISTANCES:
        sub = folder / f"surveillance_cameras_distance_{d}"
        if not sub.is_dir():
            raise DataError(f"{folder}: missing folder surveillance_cameras_distance_{d}")
        for name in sorted(os.listdir(sub)):
            m = _SURV.match(name)
            if m:
                if int(m.group(3)) != d:
                    raise DataError(f"{sub / name}: distance {m.group(3)} in a distance-{d} folder")
                out.append(SCfaceImage(sub / name, int(m.group(1)) - 1, d, int(m.group(2))))
    if not any(i.distance == 0 for i in out):
        raise DataError(f"{folder / 'mugshot_frontal_cropped_all'}: no NNN_frontal.JPG mugshots")
    return sorted(out, key=lambda i: (i.subject, i.distance, i.camera))


def scface_split(
    images: list[SCfaceImage], split: Literal["train", "test"], train_subjects: int = SCFACE_TRAIN_SUBJECTS
) -> list[SCfaceImage]:
    if split not in ("train", "test"):
        raise ParameterError(f"split must be train or test, got {split!r}")
    return [i for i in images if (i.subject < train_subjects) == (split == "train")]


class SCface(Dataset):
    """SCface images (mugshots and surveillance at 3 distances); train = subjects 1-50, test = 51-130.

    Items carry ``distance`` (0 = mugshot) and ``camera``; ``resolution`` is not known per image."""

    paper = "SCface (Grgic et al. 2011) as used by DCR"

    def __init__(
        self,
        root: str | os.PathLike,
        split: Literal["train", "test"] = "train",
        image_size: int = 120,
        train_subjects: int = SCFACE_TRAIN_SUBJECTS,
    ):
        self.images = scface_split(scan_scface(root), split, train_subjects)
        if not self.images:
            raise DataError(f"{root}: no SCface images in the {split} split")
        self.image_size = image_size
        self._labels = torch.tensor([i.subject for i in self.images])
        self.num_classes = SCFACE_SUBJECTS

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> Tensor:
        return self._labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        from facerec.data.decode import read_image

        img = self.images[index]
        return {
            "image": read_image(img.path, self.image_size),
            "label": img.subject,
            "distance": img.distance,
            "camera": img.camera,
        }
