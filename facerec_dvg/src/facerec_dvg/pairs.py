"""Paired NIR/VIS sampling from any facerec dataset with ``modality`` metadata (0 = VIS, 1 = NIR)."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from facerec.api import Dataset
from facerec.errors import DataError
from torch import Tensor

NIR, VIS = 1, 0


def dataset_modality(dataset: Dataset) -> Tensor:
    """Every sample's modality without decoding images where the dataset allows it."""
    mod = getattr(dataset, "modality", None)  # facerec.api.Dataset.modality: a tensor or None
    if isinstance(mod, Tensor) and len(mod) == len(dataset):
        return mod.long()
    parts = []
    for start in range(0, len(dataset), 256):
        batch = dataset.batch(range(start, min(start + 256, len(dataset))))
        if "modality" not in batch:
            raise DataError(
                f"dataset {type(dataset).__name__} has no 'modality' metadata: DVG needs NIR and VIS images"
            )
        parts.append(torch.as_tensor(batch["modality"]).long())
    return torch.cat(parts)


@attrs.define
class PairSampler:
    """Draws (NIR, VIS) index pairs of the same identity, like DVG-Face's paired dataset.

    Only identities with at least one NIR and one VIS image are used. Every eligible image is an
    anchor; its partner is a random image of the same label in the other modality.
    """

    labels: Tensor
    modality: Tensor
    anchors: Tensor = attrs.field(init=False)
    _by_label: dict[tuple[int, int], Tensor] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.labels = self.labels.long()
        self.modality = self.modality.long()
        nir_ids = set(self.labels[self.modality == NIR].tolist())
        vis_ids = set(self.labels[self.modality == VIS].tolist())
        both = nir_ids & vis_ids
        if not both:
            raise DataError("no identity has both NIR and VIS images: DVG needs paired modalities")
        keep = torch.tensor([int(label) in both for label in self.labels.tolist()])
        self.anchors = keep.nonzero().flatten()
        # Sorted index tables per (label, modality) give vectorised random partner lookup.
        for m in (NIR, VIS):
            sel = (self.modality == m) & keep
            idx = sel.nonzero().flatten()
            order = torch.argsort(self.labels[idx], stable=True)
            self._by_label[(m, 0)] = idx[order]
            self._by_label[(m, 1)] = self.labels[idx][order]

    @property
    def num_identities(self) -> int:
        return int(self.labels[self.anchors].unique().numel())

    def _partners(self, labels: Tensor, modality: int, generator: torch.Generator) -> Tensor:
        idx, lab = self._by_label[(modality, 0)], self._by_label[(modality, 1)]
        lo = torch.searchsorted(lab, labels, right=False)
        hi = torch.searchsorted(lab, labels, right=True)
        r = torch.rand(len(labels), generator=generator)
        return idx[lo + (r * (hi - lo)).long().clamp_max(hi - lo - 1)]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(nir_indices, vis_indices, labels) of ``batch_size`` pairs."""
        a = self.anchors[torch.randint(len(self.anchors), (batch_size,), generator=generator)]
        labels = self.labels[a]
        is_nir = self.modality[a] == NIR
        nir = torch.where(is_nir, a, self._partners(labels, NIR, generator))
        vis = torch.where(is_nir, self._partners(labels, VIS, generator), a)
        return nir, vis, labels


def fetch_images(dataset: Dataset, indices: Tensor, size: int, device: str | torch.device) -> Tensor:
    """Canonical images of ``indices`` resized to ``size`` (RGB, [0, 1]) on ``device``."""
    images = torch.as_tensor(dataset.batch(indices.tolist())["image"]).float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images.to(device)
