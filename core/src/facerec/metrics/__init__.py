"""Verification and identification metrics: exact, vectorised, with the papers' conventions on request.

Conventions of the default functions (compat helpers at the end reproduce the original codes):

* Scores are similarities (higher = more likely the same person) unless ``higher_is_same=False``.
* ROC points are those of ``sklearn.metrics.roc_curve`` (one point per distinct score, optionally
  thinned by ``drop_intermediate``), computed with one sort and cumulative sums.
* ``tar_at_far`` default rule ``"at_most"``: the largest TAR whose FAR does not exceed the target
  (exact, on the full ROC). ``"nearest"`` = insightface IJB code, ``"above"`` = DVG (first point with
  FAR strictly above the target).
* ``kfold_accuracy``: contiguous folds in input order; the threshold is chosen on the other folds;
  the reported std is the POPULATION std (ddof=0) of the fold accuracies, as insightface and DCR do.

Inputs containing NaN are refused with :class:`MetricInputError` naming how many there are.
"""

from .checks import MetricInputError
from .compat import insightface_verification, squared_l2

# _nearest_index: read by the insightface parity test as metrics._nearest_index
from .gallery import Gallery, faiss_available
from .curves import ROC, _nearest_index, auc, average_precision, eer, roc, tar_at_far  # noqa: F401
from .identification import RankResult, cmc, cosine_scores, dir_at_fpir, identification_ranks, rank_k, search
from .verification import BestThreshold, KFoldResult, best_threshold_accuracy, fold_bounds, kfold_accuracy

__all__ = [
    "MetricInputError",
    "ROC",
    "roc",
    "tar_at_far",
    "eer",
    "auc",
    "average_precision",
    "KFoldResult",
    "fold_bounds",
    "kfold_accuracy",
    "BestThreshold",
    "best_threshold_accuracy",
    "cosine_scores",
    "search",
    "Gallery",
    "faiss_available",
    "RankResult",
    "identification_ranks",
    "rank_k",
    "cmc",
    "dir_at_fpir",
    "insightface_verification",
    "squared_l2",
]
