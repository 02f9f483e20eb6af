"""insightface's evaluation mode, reproduced on top of the exact metrics (the papers' own modes live in their
plugins: ``facerec_dcr.metrics``, ``facerec_dvg.metrics``)."""

from __future__ import annotations

import numpy as np

from .checks import MetricInputError, _as_numpy
from .verification import KFoldResult, kfold_accuracy


def insightface_verification(emb1, emb2, issame, n_folds: int = 10) -> KFoldResult:
    """insightface ``evaluate()`` accuracy part: L2-normalised float64 embeddings, squared L2
    distance, grid arange(0, 4, 0.01), ``dist < thr``, first argmax, contiguous folds."""
    dist = squared_l2(emb1, emb2)
    return kfold_accuracy(
        dist, issame, n_folds, thresholds=np.arange(0, 4, 0.01), higher_is_same=False, strict=True, tie="first"
    )


def squared_l2(emb1, emb2) -> np.ndarray:
    """insightface's distance on L2-normalised embeddings (float64)."""
    e1 = _as_numpy(emb1, np.float64)
    e2 = _as_numpy(emb2, np.float64)
    if e1.ndim != 2 or e1.shape != e2.shape:
        raise MetricInputError(
            f"the two embedding sets must be [N, D] of the same shape, got {e1.shape} and {e2.shape}"
        )
    e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    return np.sum((e1 - e2) ** 2, axis=1)
