"""Identification statistics of NIR probes against a VIS gallery, with paired bootstrap errors.

Everything works on the probe x gallery cosine score matrix. Per probe we keep the rank of its mate, its
genuine score and its impostor scores; the bootstrap resamples PROBES (with replacement, the same draw
for every model, so differences are paired) and recomputes rank-1 and VR@FAR from weights, without
copying the score matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import torch
from torch import Tensor

#: Bootstrap replicates: the SE of an SE from 500 replicates is ~3 % of it.
REPLICATES = 500


@attrs.frozen
class ProbeScores:
    """One model's scores, reduced to what rank-k, ROC and the bootstrap need (probes with a gallery mate)."""

    rank: Tensor  # [P] 0-based rank of the mate among the gallery
    genuine: Tensor  # [P] score of the mate
    impostor: Tensor  # [P, G-1] the other gallery scores (each probe has exactly one mate)

    @property
    def num_probes(self) -> int:
        return len(self.rank)


def probe_scores(scores: Tensor | np.ndarray, probe_labels: Tensor, gallery_labels: Tensor) -> ProbeScores:
    """Reduce a ``[P, G]`` score matrix; the gallery holds one image per identity (as CASIA's View 2)."""
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
    same = probe_labels.view(-1, 1) == gallery_labels.view(1, -1)
    if bool((same.sum(1) != 1).any()):
        raise ValueError("every probe needs exactly one gallery image of its identity")
    genuine = s[same]
    rank = (s > genuine.view(-1, 1)).sum(1)  # ties count in the probe's favour, as top-k does for the first index
    impostor = s[~same].view(len(s), -1)
    return ProbeScores(rank=rank, genuine=genuine, impostor=impostor)


def cmc(ps: ProbeScores, max_rank: int = 20) -> np.ndarray:
    """Identification rate at ranks 1..max_rank."""
    ranks = torch.arange(max_rank).view(-1, 1)
    return (ps.rank.view(1, -1) <= ranks).float().mean(1).numpy()


def _vr_weighted(ps: ProbeScores, weights: Tensor, far: float) -> Tensor:
    """VR (TAR) at ``far`` for every row of probe ``weights`` ``[R, P]``: the largest TAR whose FAR
    (weighted fraction of impostor scores at or above the threshold) is at most ``far``.

    Only the highest impostor scores can hold the threshold: the top ``4 far + 1 %`` of them are
    sorted (a resample that needs more falls back to all of them)."""
    per_probe = ps.impostor.shape[1]
    imp = ps.impostor.reshape(-1)
    total = weights.sum(1) * per_probe
    allowed = far * total
    for fraction in (min(1.0, 4 * far + 0.01), 1.0):
        k_top = max(1, min(len(imp), int(np.ceil(fraction * len(imp)))))
        top, order = torch.topk(imp, k_top)
        owner = order // per_probe  # the probe of each sorted impostor score
        out, ok = torch.empty(len(weights)), True
        for start in range(0, len(weights), 64):
            w = weights[start : start + 64]
            cum = torch.cumsum(w[:, owner], 1)
            k = torch.searchsorted(cum, allowed[start : start + 64].view(-1, 1), right=True).view(-1)
            if k_top < len(imp) and bool((k >= k_top).any()):
                ok = False
                break
            # accept genuine scores strictly above the first impostor score that may not be accepted
            thr = torch.where(k < k_top, top[k.clamp(max=k_top - 1)], torch.tensor(-float("inf")))
            out[start : start + 64] = (w * (ps.genuine.view(1, -1) > thr.view(-1, 1))).sum(1) / w.sum(1)
        if ok:
            return out
    raise AssertionError("unreachable: the full impostor set always holds the threshold")


def vr_at_far(ps: ProbeScores, far: float) -> float:
    return float(_vr_weighted(ps, torch.ones(1, ps.num_probes), far)[0])


def roc_curve(ps: ProbeScores, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at ``points`` log-spaced FARs from 1/#impostors to 1."""
    n_imp = ps.impostor.numel()
    fars = np.unique(np.concatenate([np.logspace(np.log10(1.0 / n_imp), 0, points), [1.0]]))
    imp = torch.sort(ps.impostor.reshape(-1), descending=True).values
    k = np.minimum((fars * n_imp).astype(np.int64), n_imp - 1)
    thr = imp[torch.as_tensor(k)]
    tar = (ps.genuine.view(1, -1) > thr.view(-1, 1)).float().mean(1).numpy()
    return fars, tar


def bootstrap_weights(num_probes: int, replicates: int = REPLICATES, seed: int = 0) -> Tensor:
    """``[R, P]`` multinomial resampling counts of probes (one draw shared by every model: paired)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(num_probes, (replicates, num_probes), generator=g)
    return torch.zeros(replicates, num_probes).scatter_add_(1, idx, torch.ones(replicates, num_probes))


@attrs.frozen
class Estimate:
    value: float
    se: float
    low: float  # 95 % percentile interval
    high: float

    def as_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


def _estimate(value: float, reps: Tensor) -> Estimate:
    lo, hi = torch.quantile(reps.double(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Estimate(value=float(value), se=float(reps.double().std()), low=lo, high=hi)


def bootstrap_metrics(
    models: Mapping[str, Sequence[ProbeScores]], far: float = 1e-2, replicates: int = REPLICATES, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Rank-1 and VR@``far`` with bootstrap SE per model. Each model may have several runs (seeds) on the
    same probes: its value is the mean over runs, resampled with the same probe draw."""
    p = next(iter(models.values()))[0].num_probes
    w = bootstrap_weights(p, replicates, seed)
    out: dict[str, dict[str, Estimate]] = {}
    for name, runs in models.items():
        hits = torch.stack([(r.rank == 0).float() for r in runs]).mean(0)
        r1 = (w @ hits) / w.sum(1)
        vr = torch.stack([_vr_weighted(r, w, far) for r in runs]).mean(0)
        out[name] = {
            "rank1": _estimate(float(hits.mean()), r1),
            "vr": _estimate(float(np.mean([vr_at_far(r, far) for r in runs])), vr),
        }
    return out


def paired_difference(
    a: Sequence[ProbeScores], b: Sequence[ProbeScores], replicates: int = REPLICATES, seed: int = 0
) -> Estimate:
    """Rank-1 of ``a`` minus rank-1 of ``b`` (each averaged over its runs), paired bootstrap over probes."""
    ha = torch.stack([(r.rank == 0).float() for r in a]).mean(0)
    hb = torch.stack([(r.rank == 0).float() for r in b]).mean(0)
    w = bootstrap_weights(len(ha), replicates, seed)
    reps = (w @ (ha - hb)) / w.sum(1)
    return _estimate(float((ha - hb).mean()), reps)
