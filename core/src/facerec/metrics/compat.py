"""The original codes' evaluation modes (insightface, DCR, DVG-Face), reproduced on top of the exact metrics."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch

from .checks import MetricInputError, _as_numpy, _tensor
from .curves import ROC, average_precision, roc, tar_at_far
from .identification import cosine_scores, rank_k
from .verification import KFoldResult, kfold_accuracy


def insightface_verification(emb1, emb2, issame, n_folds: int = 10) -> KFoldResult:
    """insightface ``evaluate()`` accuracy part: L2-normalised float64 embeddings, squared L2
    distance, grid arange(0, 4, 0.01), ``dist < thr``, first argmax, contiguous folds."""
    dist = squared_l2(emb1, emb2)
    return kfold_accuracy(dist, issame, n_folds, thresholds=np.arange(0, 4, 0.01), higher_is_same=False,
                          strict=True, tie="first")


def squared_l2(emb1, emb2) -> np.ndarray:
    """insightface's distance on L2-normalised embeddings (float64)."""
    e1 = _as_numpy(emb1, np.float64)
    e2 = _as_numpy(emb2, np.float64)
    if e1.ndim != 2 or e1.shape != e2.shape:
        raise MetricInputError(f"the two embedding sets must be [N, D] of the same shape, "
                               f"got {e1.shape} and {e2.shape}")
    e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    return np.sum((e1 - e2) ** 2, axis=1)


def dcr_verification(scores, same, n_folds: int = 10) -> KFoldResult:
    """DCR ``evaluate_verification``: cosine scores, grid arange(-1, 1, 0.005), ``score > thr``,
    the largest threshold wins ties, contiguous folds, population std."""
    return kfold_accuracy(_as_numpy(scores, np.float32).astype(np.float64), same, n_folds,
                          thresholds=np.arange(-1.0, 1.0, 0.005), strict=True, tie="last")


def dvg_eer(scores, same, *, curve: ROC | None = None) -> float:
    """DVG ``get_eer`` on the sklearn-thinned ROC: first i with tpr >= 1 - fpr; ``1 - tpr[i]`` when
    tpr[i] == tpr[i+1], else fpr[i] (the script prints ``1 -`` this as 'EER')."""
    c = curve if curve is not None else roc(scores, same, drop_intermediate=True)
    i = int(np.argmax(c.tpr >= 1.0 - c.fpr))
    nxt = min(i + 1, c.tpr.size - 1)
    return float(1.0 - c.tpr[i]) if c.tpr[i] == c.tpr[nxt] else float(c.fpr[i])


@attrs.frozen
class DVGResult:
    score_matrix: torch.Tensor
    rank: dict[int, float]
    tpr_at_far: np.ndarray
    ap: float
    eer_raw: float


def dvg_evaluation(gallery, gallery_labels, probe, probe_labels, ranks: Sequence[int] = (1, 3, 5, 10, 20),
                   fars: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)) -> DVGResult:
    """DVG ``evaluation_1n`` + ``evaluation_11``: cosine [G, P] matrix, closed-set rank-k, and over
    all G x P pairs TPR@FAR with the strict 'first FAR above' rule, AP and DVG's EER."""
    S = cosine_scores(gallery, probe)
    gl = _tensor(gallery_labels).long()
    pl = _tensor(probe_labels).long()
    r = rank_k(gallery, gallery_labels, probe, probe_labels, ks=ranks, ties="optimistic")
    # DVG computes float32(hits)/float32(denominator)
    L = (gl[:, None] == pl[None, :]).numpy().ravel()
    flat = S.numpy().ravel()
    curve = roc(flat, L, drop_intermediate=True)
    return DVGResult(score_matrix=S, rank=r, tpr_at_far=tar_at_far(flat, L, fars, rule="above", curve=curve),
                     ap=average_precision(flat, L), eer_raw=dvg_eer(flat, L, curve=curve))
