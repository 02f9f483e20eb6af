"""Input checks shared by every metric: one-line :class:`MetricInputError` naming what was wrong."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


class MetricInputError(DataError, ValueError):
    """Scores/labels that cannot be scored (NaN, wrong shapes, a class missing)."""


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
        raise MetricInputError(
            f"{name} must lie in [0, 1], got {float(arr[bad][0])} (at index {int(np.flatnonzero(bad)[0])})"
        )
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
        raise MetricInputError(
            f"{len(rows)} {name} feature(s) contain NaN or inf (or overflow float32), "
            f"rows {first}; refusing to rank them"
        )
    return norm


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
