"""Metrics speed: 10-fold accuracy (vs an insightface-style per-threshold loop, identical folds),
TAR@FAR over IJB-C-sized score sets (vs sklearn roc_curve + nearest point) and closed-set ranks (vs a
full score matrix sorted per probe), each baseline measured in the same run. Search: bench_search."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.common import compare, main, peak_extra_mb, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, peak_extra_mb, record

from facerec import metrics


# ----------------------------------------------------------------------------------- 10-fold


def insightface_loop(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray, n_folds: int = 10):
    """The structure of insightface ``calculate_roc`` (accuracy part): per fold, per threshold numpy calls."""
    n = len(dist)
    edges = metrics.fold_bounds(n, n_folds)
    acc = np.zeros(n_folds)
    best = np.zeros(n_folds, dtype=np.int64)
    idx = np.arange(n)

    def accuracy(t, d, s):
        pred = np.less(d, t)
        tp = np.sum(np.logical_and(pred, s))
        tn = np.sum(np.logical_and(np.logical_not(pred), np.logical_not(s)))
        return (tp + tn) / d.size

    for f in range(n_folds):
        test = idx[edges[f] : edges[f + 1]]
        train = np.setdiff1d(idx, test)
        acc_train = np.zeros(len(thresholds))
        for i, t in enumerate(thresholds):
            acc_train[i] = accuracy(t, dist[train], issame[train])
        best[f] = int(np.argmax(acc_train))
        acc[f] = accuracy(thresholds[best[f]], dist[test], issame[test])
    return acc, best


def _kfold_scores(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    same = (np.arange(n) // max(n // 20, 1)) % 2 == 0  # LFW-like: blocks of same then different pairs
    dist = np.clip(rng.normal(1.3, 0.25, n) - 0.45 * same, 0, 4)
    return dist, same


def bench_kfold(quick: bool) -> list[dict]:
    """10-fold accuracy at 6k pairs (LFW) and, with --full, 1M and 10M (vs the same insightface loop)."""
    grid = np.arange(0, 4, 0.01)
    out = []
    for n in (6000,) if quick else (6000, 1_000_000, 10_000_000):
        dist, same = _kfold_scores(n)
        ours = metrics.kfold_accuracy(dist, same, thresholds=grid, higher_is_same=False, strict=True, tie="first")
        base_acc, base_idx = insightface_loop(dist, same, grid)
        identical = bool(
            np.array_equal(ours.fold_accuracy, base_acc) and np.array_equal(ours.threshold_index, base_idx)
        )
        repeats = 3 if n <= 6000 else 1
        t = compare(
            lambda: metrics.kfold_accuracy(dist, same, thresholds=grid, higher_is_same=False, strict=True, tie="first"),
            lambda: insightface_loop(dist, same, grid),
            items=n,
            repeats=repeats,
            warmup=int(n <= 6000),
        )
        t_exact = compare(
            lambda: metrics.kfold_accuracy(-dist, same),
            lambda: insightface_loop(dist, same, grid),
            items=n,
            repeats=repeats,
            warmup=int(n <= 6000),
        )
        mem = peak_extra_mb(lambda: metrics.kfold_accuracy(-dist, same))
        mem_base = peak_extra_mb(lambda: insightface_loop(dist, same, grid))
        out += [
            record(
                f"kfold_accuracy_{n}_pairs_grid400",
                "pairs/s, 10 folds, insightface grid",
                t,
                notes=f"identical fold accuracies and threshold indices: {identical}",
            ),
            record(
                f"kfold_accuracy_{n}_pairs_exact",
                "pairs/s, 10 folds, exact threshold (all distinct scores)",
                t_exact,
                facerec_extra_mem_mb=round(mem, 1),
                baseline_extra_mem_mb=round(mem_base, 1),
                notes="facerec exact threshold search vs the 400-threshold insightface loop",
            ),
        ]
    return out


# ----------------------------------------------------------------------------------- TAR@FAR


def sklearn_nearest(scores: np.ndarray, labels: np.ndarray, fars) -> np.ndarray:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    return np.array([tpr[min(zip(np.abs(fpr - x), range(len(fpr))))[1]] for x in fars])


def bench_tar_at_far(quick: bool) -> list[dict]:
    """TAR@FAR on IJB-C-like score sets (0.125% genuine) of 2M (quick) or 1M / 10M / 100M (--full)."""
    if importlib.util.find_spec("sklearn") is None:
        return [{"name": "tar_at_far", "measured": "skipped", "notes": "scikit-learn not installed"}]
    out = []
    for n in (2_000_000,) if quick else (1_000_000, 10_000_000, 100_000_000):
        n_pos = max(1, n * 19_557 // 15_658_489)
        rng = np.random.default_rng(0)
        labels = np.zeros(n, dtype=np.int64)
        labels[rng.choice(n, n_pos, replace=False)] = 1
        scores = (rng.normal(0.0, 0.1, n) + 0.5 * labels).astype(np.float32).astype(np.float64)
        fars = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
        ours = metrics.tar_at_far(scores, labels, fars, rule="nearest")
        same = bool(np.array_equal(ours, sklearn_nearest(scores, labels, fars)))
        t = compare(
            lambda: metrics.tar_at_far(scores, labels, fars, rule="nearest"),
            lambda: sklearn_nearest(scores, labels, fars),
            items=n,
            repeats=3 if n <= 10_000_000 else 1,
            warmup=int(n <= 10_000_000),
        )
        mem_ours = peak_extra_mb(lambda: metrics.tar_at_far(scores, labels, fars, rule="nearest"))
        mem_base = peak_extra_mb(lambda: sklearn_nearest(scores, labels, fars))
        out.append(
            record(
                f"tar_at_far_nearest_{n}_scores",
                "scores/s, 6 FAR points (baseline sklearn)",
                t,
                facerec_extra_mem_mb=round(mem_ours, 1),
                baseline_extra_mem_mb=round(mem_base, 1),
                notes=f"identical TARs: {same}; input {scores.nbytes / 2**20:.0f} MiB float64",
            )
        )
        scores = labels = None  # free before the next size
    return out


def numpy_sorted_ranks(gallery: np.ndarray, gl: np.ndarray, probe: np.ndarray, pl: np.ndarray) -> np.ndarray:
    """The usual rank/CMC code: full score matrix, argsort every row, position of the first mate."""
    s = probe @ gallery.T
    order = np.argsort(-s, axis=1)
    hit = gl[order] == pl[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, 0)


def bench_ranks(quick: bool) -> list[dict]:
    n_gal = 100_000  # the size in both modes (quick: fewer repeats)
    n_probe, d = 1000, 512
    gen = torch.Generator().manual_seed(1)
    g = torch.nn.functional.normalize(torch.randn(n_gal, d, generator=gen), dim=1)
    gl = torch.arange(n_gal)
    pl = torch.randint(0, n_gal, (n_probe,), generator=gen)
    p = torch.nn.functional.normalize(g[pl] + 0.06 * torch.randn(n_probe, d, generator=gen), dim=1)
    gn, gln, pn, pln = g.numpy(), gl.numpy(), p.numpy(), pl.numpy()
    ours = metrics.identification_ranks(g, gl, p, pl).ranks
    base = numpy_sorted_ranks(gn, gln, pn, pln)
    same = float(np.mean(ours == base))  # float32 sgemm rounding may reorder near-ties
    t = compare(
        lambda: metrics.identification_ranks(g, gl, p, pl),
        lambda: numpy_sorted_ranks(gn, gln, pn, pln),
        items=n_probe,
        repeats=3,
    )
    mem_ours = peak_extra_mb(lambda: metrics.identification_ranks(g, gl, p, pl))
    mem_base = peak_extra_mb(lambda: numpy_sorted_ranks(gn, gln, pn, pln))
    return [
        record(
            f"identification_ranks_{n_probe}x{n_gal}_512d",
            "probes/s (rank of the first mate, full CMC)",
            t,
            facerec_extra_mem_mb=round(mem_ours, 1),
            baseline_extra_mem_mb=round(mem_base, 1),
            notes=f"rank agreement with the baseline {same:.4f} (rank-1 {float(np.mean(ours == 1)):.3f}); "
            "facerec: chunked matmul + count of higher scores, no sort",
        )
    ]


def run(quick: bool) -> list[dict]:
    return bench_kfold(quick) + bench_tar_at_far(quick) + bench_ranks(quick)


if __name__ == "__main__":
    main(run)
