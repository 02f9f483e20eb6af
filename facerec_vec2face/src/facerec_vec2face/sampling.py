"""Identity vectors: PCA-Gaussian sampling fitted on centre features, optional minimum separation,
and norm-preserving intra-class perturbation that works for any count."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor


@attrs.frozen
class IdentitySampler:
    """Gaussian with the centres' mean and covariance, drawn in PCA space (``mean + z * sqrt(var) @ V``).

    Equivalent to the original ``PCA(512)`` -> ``multivariate_normal(mean, cov)`` -> ``inverse_transform``.
    """

    mean: Tensor
    components: Tensor  # [k, D], rows orthonormal
    std: Tensor  # [k], per-component standard deviation

    @classmethod
    def fit(cls, centers: Tensor, n_components: int | None = None) -> IdentitySampler:
        centers = torch.as_tensor(centers, dtype=torch.float64)
        if centers.ndim != 2 or len(centers) < 2:
            raise ValueError(f"centre features must be a [N>=2, D] matrix, got shape {tuple(centers.shape)}")
        mean = centers.mean(0)
        _, s, vh = torch.linalg.svd(centers - mean, full_matrices=False)
        k = min(n_components or vh.shape[0], vh.shape[0])
        std = s[:k] / (len(centers) - 1) ** 0.5
        return cls(mean.float(), vh[:k].float(), std.float())

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               min_separation: float | None = None, max_draws: int = 50) -> Tensor:
        """``n`` vectors; with ``min_separation`` every pair has cosine < that value (greedy rejection)."""
        if min_separation is None:
            return self._draw(n, generator)
        kept = torch.empty(0, self.mean.numel())
        for _ in range(max_draws):
            cand = self._draw(max(2 * (n - len(kept)), 16), generator)
            kept = _greedy_separated(kept, cand, min_separation)
            if len(kept) >= n:
                return kept[:n]
        raise ValueError(f"could not draw {n} identities with pairwise cosine < {min_separation} "
                         f"(got {len(kept)} after {max_draws} rounds); lower min_separation")

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        z = torch.randn(n, len(self.std), generator=generator)
        return self.mean + (z * self.std) @ self.components

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "components": self.components, "std": self.std}


def _greedy_separated(kept: Tensor, cand: Tensor, thr: float) -> Tensor:
    """Keep candidates (in order) whose cosine to every kept vector is below ``thr``."""
    c = F.normalize(cand, dim=1)
    if len(kept):
        ok = (c @ F.normalize(kept, dim=1).T).max(1).values < thr  # one matrix product for the old set
        cand, c = cand[ok], c[ok]
    sim = c @ c.T
    accepted = torch.zeros(len(cand), dtype=torch.bool)
    for i in range(len(cand)):  # greedy order within a block is inherently sequential (one row at a time)
        accepted[i] = not bool((sim[i, :i][accepted[:i]] >= thr).any())
    return torch.cat([kept, cand[accepted]])


def _counts(rows: int, pct: Sequence[float]) -> list[int]:
    """Split ``rows`` by ``pct`` with largest remainders, so the parts always sum to ``rows``."""
    total = float(sum(pct))
    raw = [rows * p / total for p in pct]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: rows - sum(counts)]:
        counts[i] += 1
    return counts


def perturb(vectors: Tensor, per_id: int, *, eps: Sequence[float] = (0.3, 0.5, 0.7),
            pct: Sequence[float] = (0.4, 0.4, 0.2), generator: torch.Generator | None = None) -> Tensor:
    """Each identity repeated ``per_id`` times plus Gaussian noise (std eps_k for a pct_k share of rows,
    shuffled), each row rescaled to its identity's norm. Rows are identity-major: [N * per_id, D]."""
    base = vectors.repeat_interleave(per_id, dim=0)
    rows = len(base)
    stds = torch.cat([torch.full((c,), float(e)) for c, e in zip(_counts(rows, pct), eps)])
    stds = stds[torch.randperm(rows, generator=generator)]
    noisy = base + torch.randn(base.shape, generator=generator) * stds.unsqueeze(1).to(base)
    return noisy * (base.norm(dim=1, keepdim=True) / noisy.norm(dim=1, keepdim=True))
