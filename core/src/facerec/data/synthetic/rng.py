"""Counter-based random numbers: the same (seed, identity, sample, stream) always gives the same value,
whatever the batch it is drawn in. A 32-bit integer hash (lowbias32) evaluated in int64 torch ops, so a
whole batch of items and streams is one vectorised call and no multiplication can overflow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    # (x * c) mod 2**32 from 16-bit halves: every partial product stays far below 2**63.
    return ((x & 0xFFFF) * c + (((x >> 16) * (c & 0xFFFF)) << 16)) & _M32


def mix32(x: Tensor) -> Tensor:
    """lowbias32 integer hash of int64 tensors holding values in [0, 2**32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def item_keys(seed: int, identities: Tensor, samples: Tensor | None = None, salt: int = 0) -> Tensor:
    """One 32-bit key per item from (seed, identity[, sample]); ``samples=None`` gives identity keys."""
    ids = identities.long()
    h = mix32(torch.full_like(ids, (int(seed) * 0x9E3779B1 + salt * 0x85EBCA77 + 0x165667B1) & _M32))
    h = mix32(h ^ (ids & _M32))
    h = mix32(h ^ ((ids >> 32) & _M32) ^ 0x27D4EB2F)
    if samples is not None:
        s = samples.long()
        h = mix32(h ^ (s & _M32) ^ 0x61C88647)
        h = mix32(h ^ ((s >> 32) & _M32))
    return h


def uniform(keys: Tensor, n: int, stream: int = 0) -> Tensor:
    """[B] keys -> [B, n] uniforms in (0, 1), independent across the n columns and across streams."""
    cols = mix32(torch.arange(n, dtype=torch.long) * 0x9E3779B1 + stream * 0xC2B2AE35 + 0x1B873593)
    h = mix32(keys[:, None] ^ cols[None, :])
    return (h.double() + 0.5).float() / 4294967296.0


def normal(keys: Tensor, n: int, stream: int = 0) -> Tensor:
    """[B, n] standard normal variates (inverse CDF of the uniforms)."""
    u = uniform(keys, n, stream).clamp(1e-6, 1 - 1e-6)
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)
