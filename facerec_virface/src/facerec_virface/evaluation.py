"""VirFace's per-epoch verification, two ways: facerec's protocols (10-fold, per-embedding normalisation:
the default) and the repository's own metric as a compatibility option (one best threshold over the whole
set, tried at every score, ``score >= t`` is "same"; features optionally normalised along dim 0 per batch,
the original's batch-dependent ``F.normalize(output, dim=0)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerec import metrics


def compat_best_threshold(scores, same) -> metrics.BestThreshold:
    """The original ``base_1v1`` sweep (vectorised in core): best accuracy, its threshold and first index."""
    return metrics.best_threshold_accuracy(scores, same)


def compat_normalise(features: Tensor, batch_size: int) -> Tensor:
    """The original's extract_feature: each feature DIMENSION normalised across every batch of
    ``batch_size`` rows (400 for LFW, 200 for CFP). Only for reproducing the published per-epoch numbers."""
    return torch.cat([F.normalize(chunk, dim=0) for chunk in features.split(batch_size)])


def compat_pair_accuracy(emb1: Tensor, emb2: Tensor, same: Tensor, *, batch_size: int | None = None,
                         ) -> dict[str, float]:
    """Cosine of each pair (after the original's dim-0 normalisation when ``batch_size`` is given) and the
    single best-threshold accuracy, named as the original logs it."""
    if batch_size:
        both = compat_normalise(torch.cat([emb1, emb2]).float(), batch_size)
        emb1, emb2 = both[: len(emb1)], both[len(emb1):]
    scores = F.cosine_similarity(emb1.float(), emb2.float(), dim=1)
    best = compat_best_threshold(scores.double().numpy(), same.numpy().astype(bool))
    return {"compat_accuracy": best.accuracy, "compat_threshold": best.threshold}
