"""Public entry of the renderer: argument checks, modality handling, batching."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...errors import ParameterError
from .params import Nuisance, sample_params
from .scene import render_batch

#: Items rendered per internal chunk (bounds peak memory; results do not depend on it).
CHUNK = 64


def _as_long(name: str, x: Tensor | Sequence[int] | int) -> Tensor:
    t = torch.as_tensor(x)
    if t.dim() == 0:
        t = t.view(1)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
        raise ParameterError(f"render: {name} must be a 1-D integer tensor, got {t.dtype} {tuple(t.shape)}")
    if len(t) and int(t.min()) < 0:
        raise ParameterError(f"render: {name} must be >= 0, got {int(t.min())}")
    return t.long()


def _modality(modality: str | Tensor | Sequence[int], n: int) -> Tensor:
    if isinstance(modality, str):
        if modality.upper() not in ("VIS", "NIR"):
            raise ParameterError(f"render: modality must be 'VIS' or 'NIR' (or a 0/1 tensor), got {modality!r}")
        return torch.full((n,), modality.upper() == "NIR", dtype=torch.bool)
    m = torch.as_tensor(modality).long().view(-1)
    if len(m) != n or (len(m) and (int(m.min()) < 0 or int(m.max()) > 1)):
        raise ParameterError(f"render: per-item modality must hold {n} values of 0 (VIS) or 1 (NIR)")
    return m.bool()


def render(
    identities: Tensor | Sequence[int],
    samples: Tensor | Sequence[int],
    *,
    seed: int = 0,
    size: int = 112,
    modality: str | Tensor | Sequence[int] = "VIS",
    yaw: Tensor | float | None = None,
    nuisance: Nuisance | None = None,
    **nuisance_params: float,
) -> Tensor:
    """Render synthetic faces: ``[B, 3, size, size]`` float RGB in [0, 1] on the CPU.

    identities, samples: 1-D int64 tensors of equal length (identity id >= 0, sample index >= 0).
    seed: the synthetic "world"; (seed, identity, sample) fixes the image exactly.
    size: output side in pixels (any size >= 16: 112, 120, 128, 144, 224 ...).
    modality: "VIS", "NIR" or a per-item tensor of 0 (VIS) / 1 (NIR). NIR images have 3 equal channels.
    yaw: head yaw in degrees, a float for all items or a per-item tensor; None draws it per sample.
    nuisance / nuisance_params: a :class:`Nuisance` or its fields as keywords (``max_yaw=30``...) to make
    the per-sample variation easier or harder than the default.
    """
    ids = _as_long("identities", identities)
    smp = _as_long("samples", samples)
    if len(ids) != len(smp):
        raise ParameterError(f"render: {len(ids)} identities but {len(smp)} samples")
    if int(size) < 16:
        raise ParameterError(f"render: size must be at least 16 pixels, got {size}")
    nir = _modality(modality, len(ids))
    if nuisance is None:
        try:
            nuisance = Nuisance(**nuisance_params)
        except TypeError as exc:
            raise ParameterError(f"render: unknown nuisance parameter ({exc})") from None
    yaws = None
    if yaw is not None:
        yaws = torch.as_tensor(yaw, dtype=torch.float32)
        yaws = yaws.expand(len(ids)) if yaws.dim() == 0 else yaws.view(-1)
        if len(yaws) != len(ids):
            raise ParameterError(f"render: yaw has {len(yaws)} values for {len(ids)} items")
    out = torch.empty(len(ids), 3, int(size), int(size))
    with torch.no_grad():
        for i in range(0, len(ids), CHUNK):
            j = slice(i, i + CHUNK)
            out[j] = render_batch(
                ids[j],
                smp[j],
                nir[j],
                seed=int(seed),
                size=int(size),
                yaw=None if yaws is None else yaws[j],
                nuisance=nuisance,
            )
    return out


def draw_yaw(identities: Tensor, samples: Tensor, *, seed: int = 0, nuisance: Nuisance | None = None) -> Tensor:
    """The yaw (degrees) ``render`` would draw for these items, without rendering (pose metadata)."""
    ids, smp = _as_long("identities", identities), _as_long("samples", samples)
    return sample_params(int(seed), ids, smp, nuisance or Nuisance()).yaw
