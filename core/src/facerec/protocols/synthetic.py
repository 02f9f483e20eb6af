"""Evaluation protocols on synthetic identities (disjoint from training ids), rendered on the fly.

* ``synthetic-pairs``: LFW-like verification, 10 folds x 600 pairs (300 same + 300 different).
* ``synthetic-pose-pairs``: CFP-FP-like, a near-frontal image against a profile (65-90 degrees yaw).
* ``synthetic-nir-vis``: CASIA NIR-VIS 2.0-like, one VIS gallery image per id, NIR probes; rank-1 and
  VR@FAR 1e-2 / 1e-3 over all gallery x probe scores.
* ``synthetic-lowres``: SCface-like, HR frontal gallery against probes degraded to 8/12/16/20 px;
  rank-1 and HR-vs-LR verification accuracy per resolution (plus full-resolution probes as reference).

Every protocol takes ``nuisance`` (a preset name such as ``"controlled"``, or a dict of
:class:`~facerec.data.synthetic.Nuisance` fields): how hard the per-sample variation of its images is.

Items are named by key strings (``"<identity>/<sample>"`` and variants below); ``evaluate_features``
scores precomputed features given under those keys (``keys`` lists them, ``images(i)`` renders them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..api import EvalResult, Protocol
from ..data.synthetic import degrade, render, resolve_nuisance
from ..data.synthetic import rng as _rng
from ..data.synthetic_datasets import PROTOCOL_ID_OFFSET
from ..errors import DataError, ParameterError
from .common import embed_images, image_size_for


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ParameterError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _SyntheticProtocol(Protocol):
    """Common machinery: an image plan (identity, sample, modality, yaw, resolution per item), batched
    rendering + embedding, feature lookup by key, and ``_score`` implemented per protocol."""

    paper = "facerec built-in synthetic protocol"
    #: checked before anything is rendered (facerec.params); subclasses share them
    param_ranges = {
        "num_folds": (2, 10**4),
        "pairs_per_fold": (4, 10**7),
        "num_ids": (2, 10**7),
        "nir_per_id": (1, 10**4),
        "probes_per_id": (1, 10**4),
        "image_size": (16, 4096),
        "id_offset": (0, 2**40),
    }

    def __init__(
        self,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        owner = type(self).__name__
        self.nuisance = resolve_nuisance(nuisance, owner)
        self.image_size = None if image_size is None else _check_int(owner, "image_size", image_size, 16)
        self.seed = int(seed)
        self.id_offset = _check_int(owner, "id_offset", id_offset, 0)
        self.flip = bool(flip)
        self._plan: dict[str, Tensor] | None = None

    # --- the plan -----------------------------------------------------------------------------
    def _build(self) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def plan(self) -> dict[str, Tensor]:
        """identity, sample, modality (0/1), yaw (degrees, NaN = drawn), resolution (0 = full) per item."""
        if self._plan is None:
            self._plan = self._build()
        return self._plan

    @property
    def keys(self) -> list[str]:
        """The item keys ``evaluate_features`` expects, in plan order."""
        p = self.plan
        mod = ("", "nir:")
        return [
            f"{mod[m]}{i}/{s}" + (f"@{r}px" if r else "")
            for i, s, m, r in zip(
                p["identity"].tolist(), p["sample"].tolist(), p["modality"].tolist(), p["resolution"].tolist()
            )
        ]

    def __len__(self) -> int:
        return len(self.plan["identity"])

    def images(self, indices: Sequence[int] | Tensor, image_size: int | None = None) -> Tensor:
        """Render plan items (canonical images), low-resolution items degraded and resized back."""
        p = self.plan
        idx = torch.as_tensor(indices, dtype=torch.long).view(-1)
        size = image_size or self.image_size or 112
        yaw = p["yaw"][idx]
        out = render(
            p["identity"][idx],
            p["sample"][idx],
            seed=self.seed,
            size=size,
            nuisance=self.nuisance,
            modality=p["modality"][idx],
            yaw=None if bool(yaw.isnan().all()) else self._fill_yaw(idx),
        )
        res = p["resolution"][idx]
        low = (res > 0).nonzero().view(-1)
        if len(low):
            out[low] = degrade(out[low], res[low])
        return out

    def _fill_yaw(self, idx: Tensor) -> Tensor:
        from ..data.synthetic import draw_yaw

        p = self.plan
        yaw = p["yaw"][idx].clone()
        nan = yaw.isnan()
        if bool(nan.any()):
            yaw[nan] = draw_yaw(p["identity"][idx][nan], p["sample"][idx][nan], seed=self.seed, nuisance=self.nuisance)
        return yaw

    def _batches(self, size: int, batch_size: int) -> Iterator[Tensor]:
        n = len(self)
        for i in range(0, n, batch_size):
            yield self.images(torch.arange(i, min(n, i + batch_size)), size)

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, model: Any, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        """Render every item in batches, embed with ``model`` (a Backbone or any images->embeddings
        callable), and score."""
        size = image_size_for(model, self.image_size)
        feats = embed_images(
            model,
            self._batches(size, batch_size),
            len(self),
            device=device,
            flip=self.flip,
            progress=progress,
            desc=type(self).__name__,
        )
        return self._score(feats)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        """Score precomputed features given as {key: embedding} (keys as listed by ``keys``)."""
        keys = self.keys
        missing = [k for k in keys if k not in features]
        if missing:
            raise DataError(
                f"{type(self).__name__}: {len(missing)} of {len(keys)} item keys have no feature "
                f"(first: {', '.join(missing[:3])})"
            )
        return self._score(torch.stack([torch.as_tensor(features[k]).float().view(-1) for k in keys]))

    def _score(self, feats: Tensor) -> EvalResult:  # pragma: no cover - interface
        raise NotImplementedError


def _plan(
    identity: Tensor,
    sample: Tensor,
    modality: Tensor | int = 0,
    yaw: Tensor | None = None,
    resolution: Tensor | int = 0,
) -> dict[str, Tensor]:
    n = len(identity)
    as_long = lambda x: x.long() if isinstance(x, Tensor) else torch.full((n,), int(x), dtype=torch.long)  # noqa: E731
    return {
        "identity": identity.long(),
        "sample": sample.long(),
        "modality": as_long(modality),
        "yaw": yaw.float() if yaw is not None else torch.full((n,), float("nan")),
        "resolution": as_long(resolution),
    }


def _cat(plans: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.cat([p[k] for p in plans]) for k in plans[0]}


def _unique_plan(plan: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """Deduplicate items; returns the unique plan and, per original item, its row in it."""
    cols = torch.stack([plan["identity"], plan["sample"], plan["modality"], plan["resolution"]], 1)
    uniq, inverse = torch.unique(cols, dim=0, return_inverse=True)
    first = torch.full((len(uniq),), len(inverse), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(inverse)), reduce="amin"
    )
    return {k: v[first] for k, v in plan.items()}, inverse


class SyntheticPairs(_SyntheticProtocol):
    """LFW-like verification on synthetic identities: 10 folds x 600 pairs (half same, half different).

    Folds use disjoint identities. In a fold, identity j gives the same-pair (j/0, j/1); the
    different-pairs match (j/2) with (pi(j)/3), pi a random derangement within the fold. Accuracy is
    the 10-fold mean (threshold chosen on the other nine folds), std over folds with ddof=0.
    """

    convention = "10-fold verification accuracy, cosine similarity, threshold from the 9 other folds (LFW)"

    def __init__(
        self,
        num_folds: int = 10,
        pairs_per_fold: int = 600,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        super().__init__(image_size, seed, id_offset, flip, nuisance)
        self.num_folds = _check_int(type(self).__name__, "num_folds", num_folds, 2)
        self.pairs_per_fold = _check_int(type(self).__name__, "pairs_per_fold", pairs_per_fold, 4)
        if self.pairs_per_fold % 2:
            raise ParameterError(f"{type(self).__name__}: pairs_per_fold must be even, got {pairs_per_fold}")

    def _pairs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(identities and samples of each pair's first image, of its second, same flags)."""
        half = self.pairs_per_fold // 2
        g = torch.Generator().manual_seed(self.seed * 7919 + 17)
        ids = self.id_offset + torch.arange(self.num_folds * half).view(self.num_folds, half)
        shift = (
            torch.randint(1, half, (self.num_folds, 1), generator=g)
            if half > 1
            else torch.zeros(self.num_folds, 1, dtype=torch.long)
        )
        perm = (torch.arange(half).view(1, -1) + shift) % half
        other = torch.gather(ids, 1, perm)
        zeros = torch.zeros_like(ids)
        a_id = torch.cat([ids, ids], 1).view(-1)
        b_id = torch.cat([ids, other], 1).view(-1)
        a_s = torch.cat([zeros, zeros + 2], 1).view(-1)
        b_s = torch.cat([zeros + 1, zeros + 3], 1).view(-1)
        same = torch.cat([torch.ones_like(ids), zeros], 1).view(-1).bool()
        return a_id, a_s, b_id, b_s, same

    def _pair_plan(self) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        a_id, a_s, b_id, b_s, same = self._pairs()
        full = _cat(
            [
                _plan(a_id, a_s, **self._extra(a_id, a_s, first=True)),
                _plan(b_id, b_s, **self._extra(b_id, b_s, first=False)),
            ]
        )
        plan, inverse = _unique_plan(full)
        n = len(a_id)
        return plan, inverse[:n], inverse[n:], same

    def _extra(self, ids: Tensor, samples: Tensor, first: bool) -> dict[str, Any]:
        return {}

    def _build(self) -> dict[str, Tensor]:
        plan, self._ia, self._ib, self._same = self._pair_plan()
        return plan

    @property
    def pairs(self) -> tuple[Tensor, Tensor, Tensor]:
        """(row of the first image, row of the second image, same-identity flag) per pair, in fold order."""
        _ = self.plan
        return self._ia, self._ib, self._same

    def _score(self, feats: Tensor) -> EvalResult:
        _ = self.plan
        f = torch.nn.functional.normalize(feats.float(), dim=1)
        scores = (f[self._ia] * f[self._ib]).sum(1).numpy()
        same = self._same.numpy()
        kf = metrics.kfold_accuracy(scores, same, n_folds=self.num_folds)
        out = {
            "accuracy": float(kf.mean),
            "accuracy_std": float(kf.std),
            "auc": float(metrics.auc(scores, same)),
            "eer": float(metrics.eer(scores, same)),
        }
        return EvalResult(
            metrics=out,
            convention=self.convention,
            artefacts={
                "fold_accuracy": kf.fold_accuracy,
                "fold_threshold": kf.fold_threshold,
                "scores": scores,
                "same": same,
            },
        )


class SyntheticPosePairs(SyntheticPairs):
    """CFP-FP-like frontal-profile verification: 10 folds x 700 pairs, the first image of each pair
    near-frontal (|yaw| <= 10 degrees), the second a profile (65-90 degrees, either side)."""

    convention = "10-fold verification accuracy, frontal vs profile pairs (CFP-FP), cosine similarity"

    def __init__(
        self,
        num_folds: int = 10,
        pairs_per_fold: int = 700,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET + 200_000,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        super().__init__(num_folds, pairs_per_fold, image_size, seed, id_offset, flip, nuisance)

    def _extra(self, ids: Tensor, samples: Tensor, first: bool) -> dict[str, Any]:
        u = _rng.uniform(_rng.item_keys(self.seed, ids, samples, salt=11), 2)
        if first:
            yaw = (u[:, 0] * 2 - 1) * 10
        else:
            yaw = (65 + 25 * u[:, 0]) * torch.where(u[:, 1] < 0.5, -1.0, 1.0)
        return {"yaw": yaw}

    def _pairs(self):
        a_id, a_s, b_id, b_s, same = super()._pairs()
        return a_id, a_s, b_id, b_s + 100, same  # profile samples are distinct items from frontal ones


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
