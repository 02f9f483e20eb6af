"""DVG's evaluation (``evaluation_1n`` + ``evaluation_11`` of the original), on core's metrics (parity-tested)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch
from facerec.metrics import ROC, average_precision, cosine_scores, rank_k, roc, tar_at_far


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


def dvg_evaluation(
    gallery,
    gallery_labels,
    probe,
    probe_labels,
    ranks: Sequence[int] = (1, 3, 5, 10, 20),
    fars: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5, 0.0),
) -> DVGResult:
    """Cosine [G, P] matrix, closed-set rank-k, and over all G x P pairs TPR@FAR with the strict 'first FAR
    above' rule, AP and DVG's EER."""
    S = cosine_scores(gallery, probe)
    gl = torch.as_tensor(gallery_labels).long()
    pl = torch.as_tensor(probe_labels).long()
    r = rank_k(gallery, gallery_labels, probe, probe_labels, ks=ranks, ties="optimistic")
    same = (gl[:, None] == pl[None, :]).numpy().ravel()
    flat = S.numpy().ravel()
    curve = roc(flat, same, drop_intermediate=True)
    return DVGResult(
        score_matrix=S,
        rank=r,
        tpr_at_far=tar_at_far(flat, same, fars, rule="above", curve=curve),
        ap=average_precision(flat, same),
        eer_raw=dvg_eer(flat, same, curve=curve),
    )
