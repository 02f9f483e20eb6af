"""1:1 verification accuracy: k-fold accuracy with thresholds chosen on the other folds, best threshold."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np

from .checks import MetricInputError, _as_numpy, _check
from .curves import _curve_counts


@attrs.frozen
class KFoldResult:
    """Per-fold test accuracies and the thresholds chosen on the other folds.

    ``std`` is the population std (ddof=0) of ``fold_accuracy``. ``fold_tpr``/``fold_fpr`` are the
    test-fold TPR/FPR at every grid threshold averaged over folds (grid mode only, insightface ROC).
    """

    fold_accuracy: np.ndarray
    fold_threshold: np.ndarray
    fold_sizes: np.ndarray
    mean: float
    std: float
    threshold_index: np.ndarray | None = None
    tpr: np.ndarray | None = None
    fpr: np.ndarray | None = None

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.mean, "accuracy_std": self.std, "threshold_mean": float(np.mean(self.fold_threshold))}


def fold_bounds(n: int, n_folds: int) -> np.ndarray:
    """Contiguous fold edges as sklearn's KFold(shuffle=False): the first n % k folds get one more."""
    if n_folds < 2 or n_folds > n:
        raise MetricInputError(f"n_folds must be between 2 and the number of pairs ({n}), got {n_folds}")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def _grid_bins(sorted_grid: np.ndarray, s: np.ndarray, right: bool) -> np.ndarray:
    """``np.searchsorted(sorted_grid, s, side="right" if right else "left")``, exactly.

    Evenly spaced grids (insightface's ``np.arange(0, 4, 0.01)``) get each bin by arithmetic and then
    corrected by exact comparisons with its neighbours, 3-4x faster than a binary search per score;
    any other grid, or one the correction does not settle in three passes, takes the binary search.
    """
    g = sorted_grid.size
    step = (sorted_grid[-1] - sorted_grid[0]) / (g - 1) if g > 1 else np.nan
    if np.isfinite(step) and step > 0:
        b = np.clip(np.floor((s - sorted_grid[0]) / step) + 1, 0, g).astype(np.intp)
        padded = np.concatenate(([-np.inf], sorted_grid, [np.inf]))  # padded[b] = grid[b-1]
        for _ in range(3):
            below, above = padded[b], padded[b + 1]  # the grid values either side of bin b
            up = (above <= s if right else above < s) & (b < g)  # the bounds matter for infinite scores
            down = (below > s if right else below >= s) & (b > 0)
            if not (up.any() or down.any()):
                return b
            b += up
            b -= down
    return np.searchsorted(sorted_grid, s, side="right" if right else "left")


def _exact_fold_threshold(s_tr: np.ndarray, y_tr: np.ndarray) -> float:
    """Best 'same iff score >= t' threshold over all cuts between distinct training scores.

    Ties resolve to the highest accuracy cut with the largest threshold; the threshold is the
    midpoint between the two distinct scores around the cut (±inf beyond the extremes -> the
    extreme score nudged by one ulp), so it is unambiguous for unseen scores.
    """
    tps, fps, vals = _curve_counts(s_tr, y_tr)  # descending distinct values
    n_pos = int(y_tr.sum())
    n_neg = y_tr.size - n_pos
    # cut j accepts the top j distinct values (j = 0 accepts nothing)
    correct = np.concatenate(([n_neg], tps + (n_neg - fps)))
    j = int(np.argmax(correct))
    if j == 0:
        return float(np.nextafter(vals[0], np.inf))
    if j == vals.size:
        return float(vals[-1])
    return float(0.5 * (vals[j - 1] + vals[j]))


def kfold_accuracy(
    scores,
    same,
    n_folds: int = 10,
    *,
    thresholds=None,
    higher_is_same: bool = True,
    strict: bool = False,
    tie: Literal["first", "last"] = "first",
    fold_ids=None,
) -> KFoldResult:
    """k-fold verification accuracy with contiguous folds in input order.

    Default (``thresholds=None``): the exact best threshold over all distinct training scores
    ("same" iff score >= t, one sort + cumsum per fold). With a grid ``thresholds``: "same" iff
    ``score > t`` when ``strict`` else ``score >= t`` (mirrored when ``higher_is_same=False``:
    ``score < t`` / ``<=``); among equally accurate grid values ``tie="first"`` keeps the first
    grid value (numpy argmax) and ``"last"`` the last one. ``fold_ids`` (one fold number 0..k-1
    per pair) replaces the contiguous folds, e.g. to keep a protocol's folds after dropping pairs.
    """
    s, y = _check(scores, same)
    if fold_ids is None:
        k = n_folds
        fold_of = np.repeat(np.arange(k), np.diff(fold_bounds(s.size, n_folds)))
    else:
        fold_of = _as_numpy(fold_ids).astype(np.int64).ravel()
        if fold_of.shape != s.shape or fold_of.min(initial=0) < 0:
            raise MetricInputError(f"fold_ids must give a fold number >= 0 for each of the {s.size} pairs")
        k = int(fold_of.max()) + 1
    sizes = np.bincount(fold_of, minlength=k)
    if (sizes == 0).any():
        raise MetricInputError(f"fold(s) {np.flatnonzero(sizes == 0).tolist()} hold no pairs")
    acc = np.empty(k)
    thr = np.empty(k)
    if thresholds is None:
        ss = s if higher_is_same else -s
        for f in range(k):  # loop over the 10 folds only; everything inside is vectorised
            train = fold_of != f
            t = _exact_fold_threshold(ss[train], y[train])
            test = ~train
            acc[f] = np.mean((ss[test] >= t) == y[test])
            thr[f] = t if higher_is_same else -t
        return KFoldResult(acc, thr, sizes, float(acc.mean()), float(acc.std()))

    grid = _as_numpy(thresholds, np.float64).ravel()
    # How many pairs each grid value accepts, for every fold, label and grid value at once: a pair's bin
    # in the sorted grid says from which grid value on it lies below the threshold, so a histogram of
    # (fold, label, bin) and a cumulative sum count the pairs below each grid value. Exact integer counts.
    order = np.argsort(grid, kind="stable")
    g = grid.size
    # "below" a grid value t means s < t when acceptance excludes ties at the low side, else s <= t:
    # s < grid_j  <=>  j >= #{grid <= s};   s <= grid_j  <=>  j >= #{grid < s}.
    below_strict = higher_is_same != strict
    bins = _grid_bins(grid[order], s, right=below_strict)
    hist = np.bincount((fold_of * 2 + y) * (g + 1) + bins, minlength=k * 2 * (g + 1)).reshape(k, 2, g + 1)
    below = np.empty((k, 2, g), np.int64)
    below[:, :, order] = np.cumsum(hist[:, :, :g], axis=2)  # back to the caller's grid order
    per_label = hist.sum(2)  # [k, (impostor, genuine)]
    accepted = per_label[:, :, None] - below if higher_is_same else below
    fp_f, tp_f = accepted[:, 0], accepted[:, 1]
    neg_f, pos_f = per_label[:, 0], per_label[:, 1]
    correct_f = tp_f + (neg_f[:, None] - fp_f)  # per-fold correct decisions at each grid value
    train_correct = correct_f.sum(0, keepdims=True) - correct_f  # [k, G]
    if tie == "first":
        best = np.argmax(train_correct, axis=1)
    elif tie == "last":
        best = grid.size - 1 - np.argmax(train_correct[:, ::-1], axis=1)
    else:
        raise MetricInputError(f"tie must be 'first' or 'last', got {tie!r}")
    rows = np.arange(k)
    acc = correct_f[rows, best] / sizes
    thr = grid[best]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(pos_f[:, None] > 0, tp_f / np.maximum(pos_f, 1)[:, None], 0.0).mean(0)
        fpr = np.where(neg_f[:, None] > 0, fp_f / np.maximum(neg_f, 1)[:, None], 0.0).mean(0)
    return KFoldResult(acc, thr, sizes, float(acc.mean()), float(acc.std()), threshold_index=best, tpr=tpr, fpr=fpr)


@attrs.frozen
class BestThreshold:
    accuracy: float
    threshold: float
    index: int


def best_threshold_accuracy(scores, same) -> BestThreshold:
    """VirFace ``base_1v1``: one threshold over the whole set, tried at every score in sample order,
    "same" iff score >= threshold, ties keep the first sample (no cross-validation: optimistic)."""
    s, y = _check(scores, same)
    tps, fps, vals = _curve_counts(s, y)  # descending distinct values
    n_neg = y.size - int(y.sum())
    correct_per_value = tps + (n_neg - fps)
    # map each sample to its distinct value's position (vals descending)
    pos = np.searchsorted(-vals, -s)
    correct = correct_per_value[pos]
    i = int(np.argmax(correct))
    return BestThreshold(accuracy=float(correct[i] / s.size), threshold=float(s[i]), index=i)


# ---------------------------------------------------------------------------------- identification
