"""The original's ``--Msampler``: batches of m images per identity (MPerClassSampler, m = 4).

The original shuffles the identities once per pass and takes m random images of each (without
replacement, with replacement for identities with fewer than m images), concatenating passes. Here
that stream is a pure function of (seed, pass), built vectorised for a whole pass, so step ``i``'s
batch can be fetched directly: exact resume and the same global batches for any number of processes.
"""

from __future__ import annotations

import torch
from facerec.errors import ParameterError
from torch import Tensor


class MPerClassIndices:
    """Callable ``i -> indices of global batch i`` with ``m`` samples of each of ``batch_size / m`` identities."""

    def __init__(self, labels: Tensor, m: int, batch_size: int, seed: int = 0):
        labels = torch.as_tensor(labels).long()
        if m < 1:
            raise ParameterError(f"recipe.m_per_class must be >= 1, got {m}")
        if batch_size % m:
            raise ParameterError(
                f"train.batch_size {batch_size} is not a multiple of recipe.m_per_class {m} "
                "(the m-per-class sampler fills batches with m images per identity)"
            )
        if (labels < 0).any():
            raise ParameterError("the m-per-class sampler needs a label for every training image")
        self.m, self.batch_size, self.seed = int(m), int(batch_size), int(seed)
        self.order = torch.argsort(labels, stable=True)  # sample indices grouped by identity
        self.classes, self.counts = torch.unique(labels, return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.pass_len = len(self.classes) * self.m
        self._cache: dict[int, Tensor] = {}

    def pass_order(self, p: int) -> Tensor:
        """Sample indices of pass ``p``: identities in a random order, m images each."""
        if p not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + p)
            perm = torch.randperm(len(self.classes), generator=g)
            counts, starts = self.counts[perm], self.starts[perm]
            # m distinct positions per identity: the ranks of random keys (the first m of a random
            # permutation of its images); identities with fewer than m images draw with replacement
            rows = max(int(self.counts.max()), self.m)
            keys = torch.rand(rows, len(perm), generator=g)
            keys[torch.arange(rows)[:, None] >= counts[None, :]] = 2.0  # past the identity's images: last
            distinct = torch.argsort(keys, dim=0)[: self.m].T  # [C, m]
            with_repl = (torch.rand(len(perm), self.m, generator=g) * counts[:, None]).long()
            pick = torch.where((counts >= self.m)[:, None], distinct, with_repl)
            self._cache[p] = self.order[(starts[:, None] + pick).reshape(-1)]
        return self._cache[p]

    def __call__(self, i: int) -> Tensor:
        start, stop = i * self.batch_size, (i + 1) * self.batch_size
        first, last = start // self.pass_len, (stop - 1) // self.pass_len
        stream = torch.cat([self.pass_order(p) for p in range(first, last + 1)])
        offset = first * self.pass_len
        return stream[start - offset : stop - offset]
