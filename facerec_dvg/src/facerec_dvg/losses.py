"""Losses of DVG-Face / DVG, as the released code computes them (weights in the callers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ort_loss(x: Tensor, y: Tensor) -> Tensor:
    """Angular orthogonality: mean |<x_i, y_i>| (inputs unit-norm)."""
    return (x * y).sum(1).abs().mean()


def ang_loss(x: Tensor, y: Tensor) -> Tensor:
    """Mean cosine <x_i, y_i> of unit-norm rows (the identity-preserving terms are -ang)."""
    return (x * y).sum(1).mean()


def derangement(n: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> Tensor:
    """A uniformly random permutation without fixed points (rejection sampling, ~e tries)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    ar = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == ar).any()):
            return perm.to(device)


def contrastive_pair_loss(fn: Tensor, fv: Tensor, idx: Tensor, margin: float = 0.5, neg_weight: float = 0.1) -> Tensor:
    """DVG-Face stage II: generated pairs are positives, deranged pairs negatives with a cosine margin.

    ``-mean <fn_i, fv_i> + neg_weight * sum_i relu(<fn_i, fv_idx(i)> - margin) / B`` on unit-norm rows.
    """
    pos = (fn * fv).sum(1).mean()
    neg = F.relu((fn * fv[idx]).sum(1) - margin).sum() / len(fn)
    return -pos + neg_weight * neg


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over the batch of KL(N(mu, e^logvar) || N(0, I)), summed over dimensions."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    eps = (
        torch.randn(mu.shape, generator=generator, device="cpu").to(mu)
        if generator is not None
        else torch.randn_like(mu)
    )
    return mu + eps * (0.5 * logvar).exp()


def batch_mean_l1(a: Tensor, b: Tensor) -> Tensor:
    """DVG NeurIPS 'MMD': mean over dims of |mean_b a - mean_b b| (an L1 distance of batch means)."""
    return (a.mean(0) - b.mean(0)).abs().mean()
