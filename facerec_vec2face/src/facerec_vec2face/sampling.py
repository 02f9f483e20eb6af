"""Identity vectors: PCA-Gaussian sampling fitted on centre features, optional minimum separation,
and norm-preserving intra-class perturbation that works for any count."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
import torch.nn.functional as F
from facerec.errors import ParameterError
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

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        min_separation: float | None = None,
        max_draws: int = 50,
    ) -> Tensor:
        """``n`` vectors; with ``min_separation`` every pair has cosine < that value (greedy rejection over a
        candidate stream drawn from ``generator``; an error after ``max_draws`` blocks that add nothing)."""
        if min_separation is None:
            return self._draw(n, generator)
        stream = SeparatedIdentities(self, min_separation, lambda b: generator, patience=max_draws)
        return stream.take(n)

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        z = torch.randn(n, len(self.std), generator=generator)
        return self.mean + (z * self.std) @ self.components

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "components": self.components, "std": self.std}


class SeparatedIdentities:
    """Identity vectors with pairwise cosine below ``threshold``, kept greedily from a candidate stream.

    Candidates come in blocks of ``block`` from ``generator_of(b)`` (a fixed stream per block), so the
    first n identities are the same however many are asked for, and :meth:`take` only extends what was
    kept before: asking chunk by chunk (as ``facerun generate`` does) costs one pass in all. Each block
    is checked against everything kept with one matrix product, then greedily in order within the block
    (a Python loop over the block's candidates only): the Python work is linear in the candidates, the
    products n^2 * D flops in BLAS."""

    def __init__(
        self, sampler: IdentitySampler, threshold: float, generator_of, *, block: int = 256, patience: int = 50
    ):
        self.sampler, self.threshold, self.generator_of = sampler, float(threshold), generator_of
        self.block, self.patience = int(block), int(patience)
        d = sampler.mean.numel()
        self._kept = torch.empty(1024, d)
        self._unit = torch.empty(1024, d)
        self.count = 0
        self._next_block = 0

    def _grow(self, need: int) -> None:
        if need > len(self._kept):
            size = max(need, 2 * len(self._kept))
            self._kept = torch.cat([self._kept, torch.empty(size - len(self._kept), self._kept.shape[1])])
            self._unit = torch.cat([self._unit, torch.empty(size - len(self._unit), self._unit.shape[1])])

    def _add_block(self) -> int:
        cand = self.sampler._draw(self.block, self.generator_of(self._next_block))
        self._next_block += 1
        c = F.normalize(cand, dim=1)
        if self.count:
            ok = (c @ self._unit[: self.count].T).max(1).values < self.threshold
            cand, c = cand[ok], c[ok]
        sim = (c @ c.T) >= self.threshold
        accepted = torch.zeros(len(cand), dtype=torch.bool)
        for i in range(len(cand)):  # greedy order within the block is sequential
            accepted[i] = not bool((sim[i, :i] & accepted[:i]).any())
        new = int(accepted.sum())
        self._grow(self.count + new)
        self._kept[self.count : self.count + new] = cand[accepted]
        self._unit[self.count : self.count + new] = c[accepted]
        self.count += new
        return new

    def take(self, n: int) -> Tensor:
        """The first ``n`` separated identities (drawing more blocks only when needed)."""
        idle = 0
        while self.count < n:
            if self._add_block():
                idle = 0
            else:
                idle += 1
                if idle >= self.patience:
                    raise ParameterError(
                        f"could not draw {n} identities with pairwise cosine < {self.threshold} "
                        f"(got {self.count}; {self.patience} blocks of {self.block} candidates added "
                        "none); lower min_separation"
                    )
        return self._kept[:n].clone()


def _counts(rows: int, pct: Sequence[float]) -> list[int]:
    """Split ``rows`` by ``pct`` with largest remainders, so the parts always sum to ``rows``."""
    total = float(sum(pct))
    raw = [rows * p / total for p in pct]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: rows - sum(counts)]:
        counts[i] += 1
    return counts


def perturb(
    vectors: Tensor,
    per_id: int,
    *,
    eps: Sequence[float] = (0.3, 0.5, 0.7),
    pct: Sequence[float] = (0.4, 0.4, 0.2),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each identity repeated ``per_id`` times plus Gaussian noise (std eps_k for a pct_k share of rows,
    shuffled), each row rescaled to its identity's norm. Rows are identity-major: [N * per_id, D]."""
    base = vectors.repeat_interleave(per_id, dim=0)
    rows = len(base)
    stds = torch.cat([torch.full((c,), float(e)) for c, e in zip(_counts(rows, pct), eps)])
    stds = stds[torch.randperm(rows, generator=generator)]
    noisy = base + torch.randn(base.shape, generator=generator) * stds.unsqueeze(1).to(base)
    return noisy * (base.norm(dim=1, keepdim=True) / noisy.norm(dim=1, keepdim=True))
