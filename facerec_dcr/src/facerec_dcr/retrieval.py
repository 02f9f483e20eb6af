"""kNN retrieval precision@1 (the original's ``task R``), chunked torch matmul; faiss optional.

The original calls pytorch-metric-learning's AccuracyCalculator with
``embeddings_come_from_same_source=True``, which drops the first neighbour of every query
whatever it is. The intent is to exclude the query's own HR counterpart; when that counterpart is
not the nearest neighbour, a different image is dropped and the counterpart stays in the
ranking. ``self_exclusion="exact"`` (default) removes exactly the counterpart; ``"drop_first"``
reproduces the original.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from facerec.errors import ParameterError
from torch import Tensor

SelfExclusion = Literal["none", "exact", "drop_first"]


def _nearest_torch(query: Tensor, reference: Tensor, k: int, exclude_diagonal: bool, metric: str, chunk: int) -> Tensor:
    q, r = query.float(), reference.float()
    if metric == "cosine":
        q, r = F.normalize(q, dim=1), F.normalize(r, dim=1)
    rt = r.T.contiguous()
    r_sq = (r * r).sum(1)
    out = []
    for start in range(0, len(q), chunk):
        qc = q[start : start + chunk]
        # squared L2 up to the per-query constant |q|^2, which does not change the ranking
        score = (qc @ rt) if metric == "cosine" else (2 * qc @ rt - r_sq)
        if exclude_diagonal:
            rows = torch.arange(len(qc))
            score[rows, rows + start] = float("-inf")
        out.append(torch.topk(score, k, dim=1).indices)
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


def _nearest_faiss(query: Tensor, reference: Tensor, k: int, metric: str) -> Tensor:
    try:
        import faiss
    except ImportError:
        raise ParameterError("backend='faiss' needs the optional extra: pip install 'facerec-dcr[faiss]'") from None
    q, r = query.float(), reference.float()
    if metric == "cosine":
        q, r = F.normalize(q, dim=1), F.normalize(r, dim=1)
    index = faiss.IndexFlatIP(r.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(r.shape[1])
    index.add(r.contiguous().numpy())
    _, idx = index.search(q.contiguous().numpy(), k)
    return torch.from_numpy(idx).long()


def precision_at_1(
    query: Tensor,
    reference: Tensor,
    query_labels: Tensor,
    reference_labels: Tensor,
    *,
    self_exclusion: SelfExclusion = "none",
    metric: Literal["l2", "cosine"] = "l2",
    backend: Literal["torch", "faiss"] = "torch",
    chunk: int = 4096,
) -> float:
    """Fraction of queries whose nearest reference (L2 as the original's faiss IndexFlatL2, or
    cosine) has the query's label. With self exclusion, query i and reference i are the same
    source (e.g. an LR image and its own HR image) and must have equal counts."""
    if self_exclusion not in ("none", "exact", "drop_first"):
        raise ParameterError(f"self_exclusion must be none, exact or drop_first, got {self_exclusion!r}")
    if metric not in ("l2", "cosine"):
        raise ParameterError(f"metric must be l2 or cosine, got {metric!r}")
    if self_exclusion != "none" and len(query) != len(reference):
        raise ParameterError(f"self exclusion needs one reference per query ({len(query)} vs {len(reference)})")
    if len(query) == 0:
        raise ParameterError("no queries to evaluate")
    k = 2 if self_exclusion == "drop_first" else 1
    if len(reference) < k + (self_exclusion == "exact"):
        raise ParameterError(f"need at least {k + (self_exclusion == 'exact')} references, got {len(reference)}")
    if backend == "faiss":
        if self_exclusion == "exact":
            nn_idx = _nearest_faiss(query, reference, 2, metric)
            own = torch.arange(len(query))[:, None]
            # the first neighbour that is not the query's own reference
            nn_idx = torch.where(nn_idx[:, :1] == own, nn_idx[:, 1:2], nn_idx[:, :1])
        else:
            nn_idx = _nearest_faiss(query, reference, k, metric)[:, k - 1 : k]
    elif backend == "torch":
        nn_idx = _nearest_torch(query, reference, k, self_exclusion == "exact", metric, chunk)[:, k - 1 : k]
    else:
        raise ParameterError(f"backend must be torch or faiss, got {backend!r}")
    return float((reference_labels[nn_idx[:, 0]] == query_labels).float().mean())
