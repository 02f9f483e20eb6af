"""Synthetic identification protocols: ``synthetic-nir-vis`` (CASIA NIR-VIS 2.0-like) and
``synthetic-lowres`` (SCface-like low resolution)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..api import EvalResult
from ..data.synthetic import rng as _rng
from ..data.synthetic_datasets import PROTOCOL_ID_OFFSET
from ..errors import ParameterError
from .synthetic_base import _cat, _check_int, _plan, _SyntheticProtocol


class SyntheticNirVisProtocol(_SyntheticProtocol):
    """CASIA NIR-VIS 2.0-like identification: gallery = one near-frontal VIS image per identity, probes =
    ``nir_per_id`` NIR images per identity. Rank-1 (closed set) and VR@FAR over all gallery x probe scores.
    ``probe_modality="VIS"`` renders the same probes in VIS: the VIS-VIS control of the same faces."""

    convention = "closed-set rank-k (cosine), VR@FAR (largest TAR with FAR <= target) over all gallery x probe pairs"

    def __init__(
        self,
        num_ids: int = 358,
        nir_per_id: int = 6,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET + 400_000,
        flip: bool = False,
        probe_modality: str = "NIR",
        nuisance: str | dict | None = None,
    ):
        super().__init__(image_size, seed, id_offset, flip, nuisance)
        self.num_ids = _check_int(type(self).__name__, "num_ids", num_ids, 2)
        self.nir_per_id = _check_int(type(self).__name__, "nir_per_id", nir_per_id, 1)
        if str(probe_modality).upper() not in ("NIR", "VIS"):
            raise ParameterError(
                f"{type(self).__name__}: probe_modality must be NIR or VIS (the VIS-VIS control), "
                f"got {probe_modality!r}"
            )
        self.probe_modality = str(probe_modality).upper()

    def _build(self) -> dict[str, Tensor]:
        ids = self.id_offset + torch.arange(self.num_ids)
        u = _rng.uniform(_rng.item_keys(self.seed, ids, torch.zeros_like(ids), salt=12), 1)[:, 0]
        gallery = _plan(ids, torch.zeros_like(ids), 0, yaw=(u * 2 - 1) * 10)
        pid = ids.repeat_interleave(self.nir_per_id)
        ps = torch.arange(1, self.nir_per_id + 1).repeat(self.num_ids)
        probes = _plan(pid, ps, int(self.probe_modality == "NIR"))
        self._n_gallery = self.num_ids
        return _cat([gallery, probes])

    def _score(self, feats: Tensor) -> EvalResult:
        p = self.plan
        g, q = feats[: self._n_gallery], feats[self._n_gallery :]
        gl, ql = p["identity"][: self._n_gallery], p["identity"][self._n_gallery :]
        ranks = metrics.rank_k(g, gl, q, ql, ks=(1, 5, 10))
        scores = metrics.cosine_scores(q, g)
        same = ql[:, None] == gl[None, :]
        vr = metrics.tar_at_far(scores.view(-1).numpy(), same.view(-1).numpy(), fars=(1e-2, 1e-3))
        out = {
            "rank1": ranks[1],
            "rank5": ranks[5],
            "rank10": ranks[10],
            "vr@far=1e-2": float(vr[0]),
            "vr@far=1e-3": float(vr[1]),
        }
        return EvalResult(metrics=out, convention=self.convention, artefacts={"scores": scores.numpy()})


class SyntheticLowResProtocol(_SyntheticProtocol):
    """SCface-like low-resolution recognition: HR near-frontal VIS gallery (one per identity) against
    ``probes_per_id`` probes per identity degraded to each of ``resolutions`` pixels (DCR's 8/12/16/20)
    and resized back. Per resolution: rank-1 and HR-vs-LR verification accuracy (10 folds; each probe
    forms one genuine pair with its own gallery image and one impostor pair). ``@full`` keys score
    undegraded probes as the reference."""

    convention = "per resolution: closed-set rank-1 (cosine) and 10-fold HR-vs-LR verification accuracy"

    def __init__(
        self,
        num_ids: int = 80,
        probes_per_id: int = 3,
        resolutions: Sequence[int] = (8, 12, 16, 20),
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET + 600_000,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        super().__init__(image_size, seed, id_offset, flip, nuisance)
        owner = type(self).__name__
        self.num_ids = _check_int(owner, "num_ids", num_ids, 2)
        self.probes_per_id = _check_int(owner, "probes_per_id", probes_per_id, 1)
        res = (resolutions,) if isinstance(resolutions, int) else tuple(resolutions)
        self.resolutions = tuple(_check_int(owner, "resolutions", r, 4) for r in res)
        if not self.resolutions:
            raise ParameterError(f"{owner}: resolutions must not be empty")

    def _build(self) -> dict[str, Tensor]:
        ids = self.id_offset + torch.arange(self.num_ids)
        u = _rng.uniform(_rng.item_keys(self.seed, ids, torch.zeros_like(ids), salt=13), 1)[:, 0]
        parts = [_plan(ids, torch.zeros_like(ids), 0, yaw=(u * 2 - 1) * 8)]
        pid = ids.repeat_interleave(self.probes_per_id)
        ps = torch.arange(1, self.probes_per_id + 1).repeat(self.num_ids)
        for r in (*self.resolutions, 0):
            parts.append(_plan(pid, ps, 0, resolution=r))
        return _cat(parts)

    def _score(self, feats: Tensor) -> EvalResult:
        p = self.plan
        n, k = self.num_ids, self.num_ids * self.probes_per_id
        g, gl = feats[:n], p["identity"][:n]
        gn = torch.nn.functional.normalize(g.float(), dim=1)
        gen = torch.Generator().manual_seed(self.seed * 31 + 5)
        pl = p["identity"][n : n + k]
        own = pl - self.id_offset
        other = (own + torch.randint(1, n, (k,), generator=gen)) % n
        out: dict[str, float] = {}
        for j, r in enumerate((*self.resolutions, 0)):
            q = feats[n + j * k : n + (j + 1) * k]
            name = f"{r}px" if r else "full"
            out[f"rank1@{name}"] = metrics.rank_k(g, gl, q, pl, ks=(1,))[1]
            qn = torch.nn.functional.normalize(q.float(), dim=1)
            genuine = (qn * gn[own]).sum(1)
            impostor = (qn * gn[other]).sum(1)
            scores = torch.stack([genuine, impostor], 1).view(-1).numpy()  # interleaved: balanced folds
            same = np.tile([True, False], k)
            out[f"accuracy@{name}"] = float(metrics.kfold_accuracy(scores, same, n_folds=min(10, k)).mean)
        return EvalResult(metrics=out, convention=self.convention)
