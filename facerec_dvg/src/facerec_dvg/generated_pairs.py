"""The dvg recipe's pairs beside the training: generated (NIR, VIS) pairs of new identities, real pairs of
the paired set (for the pictures and the identity check), and the generated ones written as a dataset."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from facerec.api import TensorDataset
from facerec.recipes import RunDir
from torch import Tensor

from .pairs import NIR, VIS, PairSampler, dataset_modality


def sample_pairs(gen: Any, n: int, seed: int, device: str) -> tuple[Tensor, Tensor]:
    """``n`` generated (NIR, VIS) pairs at the generator's size, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    nirs, viss = [], []
    for start in range(0, n, 64):
        nir, vis = gen.sample_pairs(min(64, n - start), generator=g, device=device)
        nirs.append(nir.cpu())
        viss.append(vis.cpu())
    return torch.cat(nirs), torch.cat(viss)


def resized(pairs: tuple[Tensor, Tensor], size: int) -> tuple[Tensor, Tensor]:
    """Pairs at the real data's size (so that both go through the backbone's input spec alike)."""
    if pairs[0].shape[-1] == size:
        return pairs
    nir, vis = (
        F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True) for x in pairs
    )
    return nir, vis


def real_pairs(dataset: Any, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` real (NIR, VIS) pairs of different identities of the paired set (for the pictures and the check)."""
    sampler = PairSampler(dataset.labels, dataset_modality(dataset))
    g = torch.Generator().manual_seed(seed)
    labels = sampler.labels[sampler.anchors].unique()
    labels = labels[torch.randperm(len(labels), generator=g)[:n]]
    nir = sampler._partners(labels, NIR, g)
    vis = sampler._partners(labels, VIS, g)
    return (
        torch.as_tensor(dataset.batch(nir.tolist())["image"]).float(),
        torch.as_tensor(dataset.batch(vis.tolist())["image"]).float(),
    )


def write_generated(run: RunDir, pairs: tuple[Tensor, Tensor], fmt: str) -> str | None:
    """The generated pairs as a dataset in the run (``generated.lmdb``, or ``generated/`` as a folder or
    a list), NIR and VIS of pair ``i`` labelled ``i``; None with ``fmt="none"``."""
    if fmt == "none":
        return None
    from facerec.data.writers import write_dataset

    nir, vis = pairs
    n = len(nir)
    data = TensorDataset(
        torch.arange(n).repeat(2),
        images=torch.cat([nir, vis]),
        modality=torch.cat([torch.full((n,), NIR, dtype=torch.long), torch.full((n,), VIS, dtype=torch.long)]),
    )
    out = run.path / f"generated.{fmt}" if fmt == "lmdb" else run.path / "generated"
    write_dataset(data, out, fmt, overwrite=True, source="dvg generated pairs")
    return str(out)


__all__ = ["real_pairs", "resized", "sample_pairs", "write_generated"]
