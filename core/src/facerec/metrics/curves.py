"""ROC curves and the rates read off them: TAR@FAR, EER, AUC, average precision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np

from .checks import MetricInputError, _check, _rates


@attrs.frozen
class ROC:
    """ROC points in increasing FAR order, starting at (0, 0) with threshold +inf (sklearn's layout).

    ``tp``/``fp`` are the counts accepted at each threshold (``score >= threshold``).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an ascending array and how often each occurs (O(n))."""
    if sorted_values.size == 0:
        return sorted_values, np.empty(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    counts = np.diff(np.append(starts, sorted_values.size))
    return sorted_values[starts], counts


def _curve_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) at each distinct score, in descending score order.

    Sorts the genuine and impostor scores separately with a plain value sort (several times faster
    than an argsort that must carry labels), then merges the few genuine values into the impostor
    runs with ``searchsorted``/``insert``: O(n log n) for one value sort, memory linear.
    """
    neg_u, neg_c = _runs(np.sort(s[~y]))
    pos_u, pos_c = _runs(np.sort(s[y]))
    j = np.searchsorted(neg_u, pos_u)
    present = np.zeros(pos_u.size, dtype=bool)
    inside = j < neg_u.size
    present[inside] = neg_u[j[inside]] == pos_u[inside]
    new = ~present
    values = np.insert(neg_u, j[new], pos_u[new])
    neg_counts = np.insert(neg_c, j[new], 0)
    pos_counts = np.zeros(values.size, dtype=np.int64)
    pos_counts[np.searchsorted(values, pos_u)] = pos_c
    return np.cumsum(pos_counts[::-1]), np.cumsum(neg_counts[::-1]), values[::-1]


def roc(scores, same, *, drop_intermediate: bool = False, higher_is_same: bool = True) -> ROC:
    """Exact ROC over every distinct score (``drop_intermediate=True`` thins it exactly as sklearn)."""
    s, y = _check(scores, same)
    if not higher_is_same:
        s = -s
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise MetricInputError(f"ROC needs both classes; got {n_pos} genuine and {n_neg} impostor pairs")
    tps, fps, thr = _curve_counts(s, y)
    if drop_intermediate and tps.size > 2:
        keep = np.ones(tps.size, dtype=bool)
        keep[1:-1] = (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0)
        tps, fps, thr = tps[keep], fps[keep], thr[keep]
    tps = np.concatenate(([0], tps))
    fps = np.concatenate(([0], fps))
    thr = np.concatenate(([np.inf], thr))
    if not higher_is_same:  # back to distances: accept when distance <= threshold
        thr = -thr
    return ROC(fpr=fps / n_neg, tpr=tps / n_pos, thresholds=thr, tp=tps, fp=fps, n_pos=n_pos, n_neg=n_neg)


Rule = Literal["at_most", "nearest", "above"]


def tar_at_far(
    scores,
    same,
    fars: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    *,
    rule: Rule = "at_most",
    curve: ROC | None = None,
) -> np.ndarray:
    """TAR at each target FAR.

    ``at_most``: largest TAR with FAR <= target (exact). ``nearest``: the ROC point (sklearn,
    drop_intermediate) whose FAR is nearest the target, ties to the larger TAR (insightface
    ``eval_ijbc.py``). ``above``: TAR of the first ROC point with FAR strictly above the target
    (DVG ``get_tpr_at_fpr``). Pass ``curve`` to reuse a computed ROC (it must match the rule:
    sklearn-thinned for ``nearest``/``above``).
    """
    targets = _rates(fars, "fars")
    if curve is None:
        curve = roc(scores, same, drop_intermediate=(rule != "at_most"))
    fpr, tpr = curve.fpr, curve.tpr
    if rule == "at_most":
        # fpr is non-decreasing; last index with fpr <= t, TPR there is the largest allowed.
        i = np.searchsorted(fpr, targets, side="right") - 1
        return tpr[np.maximum(i, 0)]
    if rule == "above":
        i = np.searchsorted(fpr, targets, side="right")
        if np.any(i >= fpr.size):
            raise MetricInputError("no ROC point has FAR above the target (FAR target >= 1)")
        return tpr[i]
    if rule == "nearest":
        return tpr[_nearest_index(fpr, targets)]
    raise MetricInputError(f"unknown tar_at_far rule {rule!r}; use at_most, nearest or above")


def _nearest_index(fpr: np.ndarray, fars: np.ndarray) -> np.ndarray:
    """Index (in increasing-FAR order) of the nearest FPR; ties -> the last one (largest TPR)."""
    # insightface flips the arrays and takes the first minimum = the last minimum in our order.
    # Candidates: the last point with fpr <= t and the first with fpr > t (their equal-fpr runs
    # end at the largest index, which is what we want for the lower side).
    hi = np.searchsorted(fpr, fars, side="right")  # first index with fpr > t
    lo = np.maximum(hi - 1, 0)
    hi_c = np.minimum(hi, fpr.size - 1)
    # the upper candidate's run of equal fpr values: take its LAST member (largest TPR)
    hi_last = np.searchsorted(fpr, fpr[hi_c], side="right") - 1
    d_lo = np.abs(fpr[lo] - fars)
    d_hi = np.abs(fpr[hi_c] - fars)
    # equal distance: the larger index (later in increasing order) wins, i.e. the upper candidate
    return np.where(d_hi <= d_lo, hi_last, lo)


def eer(scores, same, *, curve: ROC | None = None) -> float:
    """Equal error rate: FAR = FRR, linearly interpolated between the two ROC points around it."""
    c = curve if curve is not None else roc(scores, same)
    fnr = 1.0 - c.tpr
    diff = fnr - c.fpr  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(diff <= 0))
    if i == 0:
        return float(c.fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(c.fpr[i - 1] + w * (c.fpr[i] - c.fpr[i - 1]))


def auc(scores, same, *, curve: ROC | None = None) -> float:
    """Area under the ROC (trapezoids; ties count half, as sklearn's roc_auc_score)."""
    c = curve if curve is not None else roc(scores, same)
    return float(np.trapezoid(c.tpr, c.fpr))


def average_precision(scores, same) -> float:
    """Step-wise average precision ``sum (R_n - R_{n-1}) P_n`` (sklearn's definition)."""
    s, y = _check(scores, same)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise MetricInputError("average precision needs at least one genuine pair")
    tps, fps, _ = _curve_counts(s, y)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))
