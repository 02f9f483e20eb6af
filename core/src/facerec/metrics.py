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

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np
import torch

from .errors import DataError


class MetricInputError(DataError, ValueError):
    """Scores/labels that cannot be scored (NaN, wrong shapes, a class missing)."""


# ----------------------------------------------------------------------------------------- inputs


def _as_numpy(x, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check(scores, same, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy(scores)
    if s.dtype.kind not in "fiu":
        raise MetricInputError(f"{name} must be numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False).ravel()
    y = _as_numpy(same).ravel().astype(bool)
    if s.shape != y.shape:
        raise MetricInputError(f"{name} has {s.size} values but labels have {y.size}")
    if s.size == 0:
        raise MetricInputError(f"{name} are empty: nothing to score")
    nan = int(np.isnan(s).sum())
    if nan:
        raise MetricInputError(f"{name} contain {nan} NaN value(s) out of {s.size}; refusing to score them")
    return s, y


def _rates(values, name: str) -> np.ndarray:
    """Target rates (FAR, FPIR): a non-empty list of numbers in [0, 1]."""
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise MetricInputError(f"{name} must be numbers in [0, 1], got {values!r}") from None
    if arr.size == 0:
        raise MetricInputError(f"{name} is empty: give at least one target rate")
    bad = ~((arr >= 0) & (arr <= 1))  # NaN fails both comparisons
    if bad.any():
        raise MetricInputError(f"{name} must lie in [0, 1], got {float(arr[bad][0])} (at index "
                               f"{int(np.flatnonzero(bad)[0])})")
    return arr


def _ranks(ks, name: str) -> list[int]:
    """Ranks asked for (k of rank-k, max_rank): integers >= 1."""
    out = []
    for k in np.atleast_1d(np.asarray(ks, dtype=object)).tolist():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MetricInputError(f"{name} must be an integer >= 1, got {k!r}")
        out.append(int(k))
    return out


def _features(x, name: str) -> torch.Tensor:
    """A 2-D [N, D] feature tensor."""
    t = _tensor(x)
    if t.dim() != 2:
        raise MetricInputError(f"{name} must be a 2-D [N, D] feature matrix, got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise MetricInputError(f"{name} must be numbers, got dtype {t.dtype}")
    return t


def _pair(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"{a_name} has {a.shape[1]}-d features but {b_name} has {b.shape[1]}-d ones")


def _labels_for(labels, rows: int, name: str, of: str) -> torch.Tensor:
    lab = _tensor(labels)
    if lab.dim() != 1 or lab.shape[0] != rows:
        raise MetricInputError(f"{name} has {tuple(lab.shape)} labels for {rows} {of} rows (need one per row)")
    if lab.is_floating_point():
        if not bool(torch.isfinite(lab).all()) or not bool((lab == lab.round()).all()):
            raise MetricInputError(f"{name} must be integer labels")
    return lab.long()


# --------------------------------------------------------------------------------------------- ROC


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


def tar_at_far(scores, same, fars: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), *,
               rule: Rule = "at_most", curve: ROC | None = None) -> np.ndarray:
    """TAR at each target FAR.

    ``at_most``: largest TAR with FAR <= target (exact). ``nearest``: the ROC point (sklearn,
    drop_intermediate) whose FAR is nearest the target, ties to the larger TAR (insightface
    ``eval_ijbc.py``). ``above``: TAR of the first ROC point with FAR strictly above the target
    (DVG ``get_tpr_at_fpr``). Pass ``curve`` to reuse a computed ROC (it must match the rule:
    sklearn-thinned for ``nearest``/``above``).
    """
    fars = _rates(fars, "fars")
    if curve is None:
        curve = roc(scores, same, drop_intermediate=(rule != "at_most"))
    fpr, tpr = curve.fpr, curve.tpr
    if rule == "at_most":
        # fpr is non-decreasing; last index with fpr <= t, TPR there is the largest allowed.
        i = np.searchsorted(fpr, fars, side="right") - 1
        return tpr[np.maximum(i, 0)]
    if rule == "above":
        i = np.searchsorted(fpr, fars, side="right")
        if np.any(i >= fpr.size):
            raise MetricInputError("no ROC point has FAR above the target (FAR target >= 1)")
        return tpr[i]
    if rule == "nearest":
        return tpr[_nearest_index(fpr, fars)]
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


# ------------------------------------------------------------------------------------ k-fold accuracy


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
        return {"accuracy": self.mean, "accuracy_std": self.std,
                "threshold_mean": float(np.mean(self.fold_threshold))}


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


def kfold_accuracy(scores, same, n_folds: int = 10, *, thresholds=None, higher_is_same: bool = True,
                   strict: bool = False, tie: Literal["first", "last"] = "first",
                   fold_ids=None) -> KFoldResult:
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
    return KFoldResult(acc, thr, sizes, float(acc.mean()), float(acc.std()), threshold_index=best,
                       tpr=tpr, fpr=fpr)


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


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


def _normalise_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """L2-normalised float32 rows; raises naming how many rows hold NaN or inf (read from the norms)."""
    x = x.float()
    return x / _finite_row_norms(x, name).clamp_min(1e-12)


def _finite_row_norms(x: torch.Tensor, name: str) -> torch.Tensor:
    """Row L2 norms [N, 1]; raises naming how many rows hold NaN or inf (a norm is non-finite exactly when
    a value is, or the squares overflow)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    bad = ~torch.isfinite(norm)
    if bool(bad.any()):
        rows = torch.nonzero(bad.flatten()).flatten()
        first = ", ".join(str(int(i)) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise MetricInputError(f"{len(rows)} {name} feature(s) contain NaN or inf (or overflow float32), "
                               f"rows {first}; refusing to rank them")
    return norm


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def cosine_scores(a, b) -> torch.Tensor:
    """Cosine similarity matrix [len(a), len(b)] in float32 (rows L2-normalised first)."""
    ta, tb = _features(a, "first feature set"), _features(b, "second feature set")
    _pair(ta, tb, "the first feature set", "the second")
    return _normalise(ta) @ _normalise(tb).T


#: Score-matrix elements computed at once by the chunked 1:N functions (16M floats = 64 MiB).
CHUNK_ELEMENTS = 1 << 24


def _chunk(chunk: int | None, n_gallery: int) -> int:
    return int(chunk) if chunk else max(1, min(4096, CHUNK_ELEMENTS // max(n_gallery, 1)))


def search(gallery, probe, k: int = 1, *, normalise: bool = True, device: str | None = None,
           backend: Literal["faiss", "torch"] | None = None, precision: Literal["float32", "int8"] = "float32",
           margin: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k gallery matches of every probe by cosine score: (scores [P, k], indices [P, k]), best first.

    ``gallery`` is features [G, D] or a prepared :class:`facerec.gallery.Gallery` (normalised once, also
    approximate indexes). Exact search runs on faiss when installed (the brute-force kernel of
    ``IndexFlatIP``), else on chunked torch products merged into a running top-k (memory bounded by the
    tile); ``device`` other than the CPU uses torch there. With ``normalise=False`` and float32 C-contiguous
    features nothing is copied. Non-finite rows are rejected with their count and indices.
    ``precision="int8"``: approximate int8 candidates re-scored exactly (see ``Gallery.search``).
    """
    from .gallery import Gallery

    if not isinstance(gallery, Gallery):
        gallery = Gallery(gallery, normalise=normalise, device=device or "cpu", backend=backend)
    return gallery.search(probe, k, normalise=normalise, precision=precision, margin=margin)


@attrs.frozen
class RankResult:
    """Closed-set identification: rank of the first mate per probe (0 = no mate in the gallery).

    ``cmc[r-1]`` is the fraction of mated probes whose mate is within rank r; the denominator is the
    number of probes with at least one mate in the gallery (probes without one are excluded).
    """

    ranks: np.ndarray
    cmc: np.ndarray
    n_mated: int
    best_mate: np.ndarray
    best_nonmate: np.ndarray

    def at(self, k: int) -> float:
        return float(self.cmc[min(k, self.cmc.size) - 1]) if self.n_mated else 0.0


def _count_ahead(sc: torch.Tensor, best_mate: torch.Tensor, beaten: torch.Tensor, strict: bool) -> torch.Tensor:
    """Per beaten probe, how many scores beat (``strict``) or reach the best mate's score. Works in
    place on ``sc`` (or on a copy of the beaten rows when few are): a bool mask's sum costs several
    times more on CPU than the sign trick below, and a fresh [c, G] buffer costs page faults."""
    rows = sc if 2 * len(beaten) > len(sc) else sc[beaten]
    d = rows.sub_(best_mate[:, None] if rows is sc else best_mate[beaten, None])
    # float sums of +-1 are exact below 2**24 per row; float64 beyond that
    acc = torch.float32 if d.shape[1] < 2**24 else torch.float64
    if strict:  # x > t  <=>  sign(max(x - t, 0)) == 1
        n = d.clamp_(min=0).sign_().sum(1, dtype=acc)
    else:  # x >= t  <=>  not (x - t < 0): G minus the count of negatives
        n = d.shape[1] + d.clamp_(max=0).sign_().sum(1, dtype=acc)
    n = n.round().long()
    return n[beaten] if rows is sc else n


def identification_ranks(gallery, gallery_labels, probe, probe_labels, *, max_rank: int | None = None,
                         chunk: int | None = None, device: str | None = None,
                         ties: str = "pessimistic") -> RankResult:
    """Rank of the first mate for every probe, with cosine scores computed in probe chunks
    (memory O(chunk x gallery)); no sorting at all.

    ``ties="pessimistic"`` (default): rank = 1 + non-mates scoring at least the best mate, so an
    embedder that scores everything alike gets no credit. ``"optimistic"``: only strictly higher
    non-mates count (what a top-k over index order gives the original scripts when nothing ties)."""
    if ties not in ("pessimistic", "optimistic"):
        raise MetricInputError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    strict = ties == "optimistic"
    if max_rank is not None:
        _ranks([max_rank], "max_rank")
    from .gallery import Gallery

    prepared = isinstance(gallery, Gallery)  # normalised and checked once, when it was built
    g, p = (gallery.features if prepared else _features(gallery, "gallery")), _features(probe, "probe")
    if g.shape[0] == 0 or p.shape[0] == 0:
        raise MetricInputError("identification needs a non-empty gallery and probe set")
    _pair(g, p, "gallery", "probe")
    gl = _labels_for(gallery_labels, g.shape[0], "gallery_labels", "gallery")
    pl = _labels_for(probe_labels, p.shape[0], "probe_labels", "probe")
    if device is not None:
        g, p, gl, pl = g.to(device), p.to(device), gl.to(device), pl.to(device)
    # checked on the features while normalising: O(N x D) instead of every score
    g, p = (g if prepared else _normalise_finite(g, "gallery")), _normalise_finite(p, "probe")
    ranks, mates, nonmates = [], [], []
    chunk = _chunk(chunk, g.shape[0])
    gt = g.T.contiguous()
    # gallery indices grouped by label (CSR), so each probe's mates are gathered, not masked
    g_order = torch.argsort(gl, stable=True)
    g_sorted = gl[g_order]
    with torch.inference_mode():
        for i in range(0, p.shape[0], chunk):
            sc = p[i : i + chunk] @ gt  # [c, G]
            lab = pl[i : i + chunk]
            lo = torch.searchsorted(g_sorted, lab)
            hi = torch.searchsorted(g_sorted, lab, right=True)
            n_mates = hi - lo
            rows = torch.repeat_interleave(torch.arange(len(lab), device=sc.device), n_mates)
            offs = torch.arange(int(n_mates.sum()), device=sc.device) - torch.repeat_interleave(
                torch.cumsum(n_mates, 0) - n_mates, n_mates)
            cols = g_order[torch.repeat_interleave(lo, n_mates) + offs]
            best_mate = torch.full((len(lab),), -torch.inf, device=sc.device)
            best_mate.scatter_reduce_(0, rows, sc[rows, cols], reduce="amax")
            sc[rows, cols] = -torch.inf  # mates out of the way: what remains are non-mates
            best_non = sc.amax(1)
            # only probes whose mate is beaten need the count of higher non-mates (rank-1 ones: 0)
            beaten = torch.nonzero(best_non > best_mate if strict else best_non >= best_mate).flatten()
            higher = torch.zeros(len(lab), dtype=torch.long, device=sc.device)
            if len(beaten):
                higher[beaten] = _count_ahead(sc, best_mate, beaten, strict)
            ranks.append(torch.where(n_mates > 0, higher + 1, torch.zeros_like(higher)).cpu())
            mates.append(best_mate.cpu())
            nonmates.append(best_non.cpu())
    r = torch.cat(ranks).numpy()
    n_mated = int((r > 0).sum())
    top = max_rank or g.shape[0]
    counts = np.bincount(r[r > 0], minlength=top + 1)[1 : top + 1]
    cmc = np.cumsum(counts) / max(n_mated, 1)
    return RankResult(ranks=r, cmc=cmc, n_mated=n_mated, best_mate=torch.cat(mates).numpy(),
                      best_nonmate=torch.cat(nonmates).numpy())


def rank_k(gallery, gallery_labels, probe, probe_labels, ks: Sequence[int] = (1, 5, 10), **kw) -> dict[int, float]:
    """Closed-set rank-k identification rates (denominator: probes with a mate in the gallery)."""
    ks = _ranks(ks, "ks")
    res = identification_ranks(gallery, gallery_labels, probe, probe_labels, **kw)
    return {k: res.at(k) for k in ks}


def cmc(gallery, gallery_labels, probe, probe_labels, max_rank: int = 20, **kw) -> np.ndarray:
    """Cumulative match characteristic: identification rate at ranks 1..max_rank."""
    (max_rank,) = _ranks([max_rank], "max_rank")
    res = identification_ranks(gallery, gallery_labels, probe, probe_labels, max_rank=max_rank, **kw)
    out = np.zeros(max_rank)
    out[: res.cmc.size] = res.cmc
    out[res.cmc.size :] = res.cmc[-1] if res.cmc.size else 0.0
    return out


def dir_at_fpir(gallery, gallery_labels, probe, probe_labels,
                fpirs: Sequence[float] = (1e-3, 1e-2, 1e-1), *, result: RankResult | None = None,
                **kw) -> dict[float, float]:
    """Open-set 1:N: detection and identification rate at false positive identification rates.

    Non-mated probes (no mate in the gallery) set the threshold: FPIR(t) = share of them whose best
    score is >= t. DIR(t) = share of mated probes whose mate is at rank 1 AND scores >= t
    (insightface's corrected IJB 1:N definition, rank-1 = mate beats every non-mate).
    ``result``: the :func:`identification_ranks` of the same inputs, when already computed.
    """
    fpirs = _rates(fpirs, "fpirs")
    res = result if result is not None else identification_ranks(gallery, gallery_labels, probe, probe_labels, **kw)
    non = np.sort(res.best_nonmate[res.ranks == 0])[::-1]
    mated = res.ranks > 0
    if non.size == 0 or not mated.any():
        raise MetricInputError("DIR@FPIR needs both mated and non-mated probes")
    out = {}
    hit_scores = res.best_mate[mated & (res.ranks == 1)]
    for fp in fpirs:
        allowed = int(np.floor(fp * non.size))
        # threshold just above the (allowed+1)-th highest non-mate score: at most `allowed` accepted
        t = np.nextafter(non[allowed], np.inf) if allowed < non.size else -np.inf
        out[float(fp)] = float((hit_scores >= t).sum() / mated.sum())
    return out


# ----------------------------------------------------------------------------------- compat modes


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
        raise MetricInputError(f"the two embedding sets must be [N, D] of the same shape, got {e1.shape} and {e2.shape}")
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


__all__ = ["MetricInputError", "ROC", "roc", "tar_at_far", "eer", "auc", "average_precision", "KFoldResult",
           "fold_bounds", "kfold_accuracy", "BestThreshold", "best_threshold_accuracy", "cosine_scores",
           "search", "RankResult", "identification_ranks", "rank_k", "cmc", "dir_at_fpir",
           "insightface_verification", "squared_l2", "dcr_verification", "dvg_eer", "DVGResult",
           "dvg_evaluation"]
