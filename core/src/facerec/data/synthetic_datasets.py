"""Registered datasets on the synthetic renderer: labelled faces, NIR-VIS pairs, HR/LR, unlabelled.

Every item is rendered on demand, deterministically from (seed, identity, sample); ``nuisance`` (a preset
name such as ``"controlled"``, or a dict of :class:`~facerec.data.synthetic.Nuisance` fields) sets how hard
the per-sample variation is. ``batch(indices)``
renders a whole batch in one vectorised call and ``labels`` never renders. Training sets use identity
ids ``id_offset + 0 .. num_ids - 1``; the synthetic protocols use ids from 1_000_000 up, so training and
evaluation identities are disjoint unless a user asks otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..api import Dataset
from ..errors import ParameterError
from .synthetic import degrade, draw_yaw, render, resolve_nuisance

#: First identity id used by the synthetic protocols (training sets stay below it by default).
PROTOCOL_ID_OFFSET = 1_000_000


def _positive(name: str, value: int, owner: str, minimum: int = 1) -> int:
    if int(value) != value or int(value) < minimum:
        raise ParameterError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _SyntheticBase(Dataset):
    """Shared indexing: item i -> (identity = id_offset + i // per_id, sample = i % per_id)."""

    paper = "facerec built-in synthetic faces (no paper)"
    #: checked before anything is rendered (facerec.params); subclasses share them
    param_ranges = {
        "num_ids": (1, 10**8),
        "per_id": (1, 10**6),
        "vis_per_id": (1, 10**6),
        "nir_per_id": (1, 10**6),
        "image_size": (16, 4096),
        "id_offset": (0, 2**40),
    }

    def __init__(self, num_ids: int, per_id: int, image_size: int, seed: int, id_offset: int, nuisance=None):
        owner = type(self).__name__
        self.nuisance = resolve_nuisance(nuisance, owner)  # how hard the per-sample variation is (a preset name)
        self.num_ids = _positive("num_ids", num_ids, owner)
        self.per_id = _positive("per_id", per_id, owner)
        self.image_size = _positive("image_size", image_size, owner, 16)
        self.id_offset = _positive("id_offset", id_offset, owner, 0)
        self.seed = int(seed)
        self.num_classes = self.num_ids

    def __len__(self) -> int:
        return self.num_ids * self.per_id

    def _index(self, indices: Sequence[int] | Tensor) -> Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long).view(-1)
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"{type(self).__name__}: index out of range for {len(self)} items")
        return idx % len(self)

    def _ids(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        return idx // self.per_id, idx % self.per_id

    @property
    def labels(self) -> Tensor:
        return torch.arange(self.num_ids).repeat_interleave(self.per_id)

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = self.batch([index])
        return {k: (v[0].item() if v.dim() == 1 else v[0]) for k, v in out.items()}

    def _render(self, idx: Tensor, modality: Tensor | str = "VIS") -> dict[str, Tensor]:
        local, sample = self._ids(idx)
        ident = local + self.id_offset
        images = render(ident, sample, seed=self.seed, size=self.image_size, modality=modality, nuisance=self.nuisance)
        return {
            "image": images,
            "label": local,
            "identity": ident,
            "pose": draw_yaw(ident, sample, seed=self.seed, nuisance=self.nuisance),
        }


class SyntheticFaces(_SyntheticBase):
    """Procedural labelled faces (num_ids x per_id), rendered on the fly; no download, any size.

    Items: ``image`` [3, S, S] in [0, 1], ``label`` 0..num_ids-1, ``identity`` (global id) and
    ``pose`` (yaw degrees). The quick preset's default is 300 ids x 15 images.
    """

    def __init__(
        self,
        num_ids: int = 300,
        per_id: int = 15,
        image_size: int = 112,
        seed: int = 0,
        id_offset: int = 0,
        nuisance: str | dict | None = None,
    ):
        super().__init__(num_ids, per_id, image_size, seed, id_offset, nuisance)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        return self._render(self._index(indices))


class SyntheticNirVis(_SyntheticBase):
    """CASIA NIR-VIS 2.0-like paired modalities: each identity has VIS and NIR images of the same face.

    Per identity, samples ``0 .. vis_per_id-1`` are VIS (modality 0) and the rest NIR (modality 1).
    Items add ``modality``. Defaults: 300 ids x (4 VIS + 6 NIR), like CASIA's NIR-heavy split.
    """

    def __init__(
        self,
        num_ids: int = 300,
        vis_per_id: int = 4,
        nir_per_id: int = 6,
        image_size: int = 112,
        seed: int = 0,
        id_offset: int = 0,
        nuisance: str | dict | None = None,
    ):
        self.vis_per_id = _positive("vis_per_id", vis_per_id, "SyntheticNirVis")
        self.nir_per_id = _positive("nir_per_id", nir_per_id, "SyntheticNirVis")
        super().__init__(num_ids, self.vis_per_id + self.nir_per_id, image_size, seed, id_offset, nuisance)

    @property
    def modality(self) -> Tensor:
        """0 (VIS) / 1 (NIR) for every item, without rendering."""
        return (torch.arange(len(self)) % self.per_id >= self.vis_per_id).long()

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = self._index(indices)
        modality = (idx % self.per_id >= self.vis_per_id).long()
        out = self._render(idx, modality)
        out["modality"] = modality
        return out


class SyntheticLowRes(_SyntheticBase):
    """DCR-style HR/LR faces: ``image`` is high resolution, ``image_lr`` the same image degraded to
    ``resolution`` pixels (cycling through ``resolutions`` over the samples) and resized back."""

    def __init__(
        self,
        num_ids: int = 300,
        per_id: int = 15,
        image_size: int = 112,
        seed: int = 0,
        id_offset: int = 0,
        resolutions: Sequence[int] = (8, 12, 16, 20),
        nuisance: str | dict | None = None,
    ):
        super().__init__(num_ids, per_id, image_size, seed, id_offset, nuisance)
        res = tuple(int(r) for r in (resolutions if not isinstance(resolutions, int) else (resolutions,)))
        if not res or min(res) < 2 or max(res) > self.image_size:
            raise ParameterError(f"SyntheticLowRes: resolutions must lie in [2, {self.image_size}], got {res}")
        self.resolutions = res

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = self._index(indices)
        out = self._render(idx)
        res = torch.as_tensor(self.resolutions)[idx % self.per_id % len(self.resolutions)]
        out["resolution"] = res
        out["image_lr"] = degrade(out["image"], res)
        return out


class SyntheticUnlabeled(_SyntheticBase):
    """Shallow unlabelled data (VirFace's setting): one or two images per identity, labels withheld
    (``label`` = -1); the true ``identity`` is kept in each item for tests and analysis only."""

    def __init__(
        self,
        num_ids: int = 1000,
        per_id: int = 1,
        image_size: int = 112,
        seed: int = 0,
        id_offset: int = 500_000,
        nuisance: str | dict | None = None,
    ):
        if per_id not in (1, 2):
            raise ParameterError(f"SyntheticUnlabeled: per_id must be 1 or 2 (shallow data), got {per_id!r}")
        super().__init__(num_ids, per_id, image_size, seed, id_offset, nuisance)
        self.num_classes = 0

    @property
    def labels(self) -> Tensor:
        return torch.full((len(self),), -1, dtype=torch.long)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        out = self._render(self._index(indices))
        out["label"] = torch.full_like(out["label"], -1)
        return out
