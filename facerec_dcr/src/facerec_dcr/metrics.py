"""DCR's verification accuracy, as the original ``evaluate_verification`` computes it (parity-tested)."""

from __future__ import annotations

import numpy as np
import torch
from facerec.metrics import KFoldResult, kfold_accuracy


def dcr_verification(scores, same, n_folds: int = 10) -> KFoldResult:
    """Cosine scores (rounded to float32 as the original's arrays are), threshold grid arange(-1, 1, 0.005),
    ``score > thr``, the largest threshold wins ties, contiguous folds, population std."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    return kfold_accuracy(
        np.asarray(scores, dtype=np.float32).astype(np.float64),
        same,
        n_folds,
        thresholds=np.arange(-1.0, 1.0, 0.005),
        strict=True,
        tie="last",
    )
