"""Evaluation protocols on synthetic identities (disjoint from training ids), rendered on the fly:

* ``synthetic-pairs``: LFW-like verification, 10 folds x 600 pairs (300 same + 300 different);
* ``synthetic-pose-pairs``: CFP-FP-like, a near-frontal image against a profile (65-90 degrees yaw);
  both in synthetic_pairs.py;
* ``synthetic-nir-vis``: CASIA NIR-VIS 2.0-like, one VIS gallery image per id, NIR probes; rank-1 and
  VR@FAR 1e-2 / 1e-3 over all gallery x probe scores;
* ``synthetic-lowres``: SCface-like, HR frontal gallery against probes degraded to 8/12/16/20 px; rank-1
  and HR-vs-LR verification accuracy per resolution (plus full-resolution probes as reference); both in
  synthetic_identification.py.

Every protocol takes ``nuisance`` (a preset name such as ``"controlled"``, or a dict of
:class:`~facerec.data.synthetic.Nuisance` fields): how hard the per-sample variation of its images is.
Items are named by key strings (``"<identity>/<sample>"``, ``"nir:"`` before NIR items, ``"@<r>px"`` after
degraded ones); ``evaluate_features`` scores precomputed features given under those keys (``keys`` lists
them, ``images(i)`` renders them).

This module is what they share: an image plan (identity, sample, modality, yaw, resolution per item),
batched rendering and embedding, feature lookup by key; each protocol implements ``_build`` (its plan) and
``_score`` (its metrics)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..api import EvalResult, Protocol
from ..data.synthetic import degrade, render, resolve_nuisance
from ..data.synthetic_datasets import PROTOCOL_ID_OFFSET
from ..errors import DataError, ParameterError
from .common import embed_images, image_size_for


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ParameterError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _SyntheticProtocol(Protocol):
    """Common machinery: an image plan (identity, sample, modality, yaw, resolution per item), batched
    rendering + embedding, feature lookup by key, and ``_score`` implemented per protocol."""

    paper = "facerec built-in synthetic protocol"
    #: checked before anything is rendered (facerec.params); subclasses share them
    param_ranges = {
        "num_folds": (2, 10**4),
        "pairs_per_fold": (4, 10**7),
        "num_ids": (2, 10**7),
        "nir_per_id": (1, 10**4),
        "probes_per_id": (1, 10**4),
        "image_size": (16, 4096),
        "id_offset": (0, 2**40),
    }

    def __init__(
        self,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        owner = type(self).__name__
        self.nuisance = resolve_nuisance(nuisance, owner)
        self.image_size = None if image_size is None else _check_int(owner, "image_size", image_size, 16)
        self.seed = int(seed)
        self.id_offset = _check_int(owner, "id_offset", id_offset, 0)
        self.flip = bool(flip)
        self._plan: dict[str, Tensor] | None = None

    # --- the plan -----------------------------------------------------------------------------
    def _build(self) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def plan(self) -> dict[str, Tensor]:
        """identity, sample, modality (0/1), yaw (degrees, NaN = drawn), resolution (0 = full) per item."""
        if self._plan is None:
            self._plan = self._build()
        return self._plan

    @property
    def keys(self) -> list[str]:
        """The item keys ``evaluate_features`` expects, in plan order."""
        p = self.plan
        mod = ("", "nir:")
        return [
            f"{mod[m]}{i}/{s}" + (f"@{r}px" if r else "")
            for i, s, m, r in zip(
                p["identity"].tolist(), p["sample"].tolist(), p["modality"].tolist(), p["resolution"].tolist()
            )
        ]

    def __len__(self) -> int:
        return len(self.plan["identity"])

    def images(self, indices: Sequence[int] | Tensor, image_size: int | None = None) -> Tensor:
        """Render plan items (canonical images), low-resolution items degraded and resized back."""
        p = self.plan
        idx = torch.as_tensor(indices, dtype=torch.long).view(-1)
        size = image_size or self.image_size or 112
        yaw = p["yaw"][idx]
        out = render(
            p["identity"][idx],
            p["sample"][idx],
            seed=self.seed,
            size=size,
            nuisance=self.nuisance,
            modality=p["modality"][idx],
            yaw=None if bool(yaw.isnan().all()) else self._fill_yaw(idx),
        )
        res = p["resolution"][idx]
        low = (res > 0).nonzero().view(-1)
        if len(low):
            out[low] = degrade(out[low], res[low])
        return out

    def _fill_yaw(self, idx: Tensor) -> Tensor:
        from ..data.synthetic import draw_yaw

        p = self.plan
        yaw = p["yaw"][idx].clone()
        nan = yaw.isnan()
        if bool(nan.any()):
            yaw[nan] = draw_yaw(p["identity"][idx][nan], p["sample"][idx][nan], seed=self.seed, nuisance=self.nuisance)
        return yaw

    def _batches(self, size: int, batch_size: int) -> Iterator[Tensor]:
        n = len(self)
        for i in range(0, n, batch_size):
            yield self.images(torch.arange(i, min(n, i + batch_size)), size)

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, model: Any, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        """Render every item in batches, embed with ``model`` (a Backbone or any images->embeddings
        callable), and score."""
        size = image_size_for(model, self.image_size)
        feats = embed_images(
            model,
            self._batches(size, batch_size),
            len(self),
            device=device,
            flip=self.flip,
            progress=progress,
            desc=type(self).__name__,
        )
        return self._score(feats)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        """Score precomputed features given as {key: embedding} (keys as listed by ``keys``)."""
        keys = self.keys
        missing = [k for k in keys if k not in features]
        if missing:
            raise DataError(
                f"{type(self).__name__}: {len(missing)} of {len(keys)} item keys have no feature "
                f"(first: {', '.join(missing[:3])})"
            )
        return self._score(torch.stack([torch.as_tensor(features[k]).float().view(-1) for k in keys]))

    def _score(self, feats: Tensor) -> EvalResult:  # pragma: no cover - interface
        raise NotImplementedError


def _plan(
    identity: Tensor,
    sample: Tensor,
    modality: Tensor | int = 0,
    yaw: Tensor | None = None,
    resolution: Tensor | int = 0,
) -> dict[str, Tensor]:
    n = len(identity)
    as_long = lambda x: x.long() if isinstance(x, Tensor) else torch.full((n,), int(x), dtype=torch.long)  # noqa: E731
    return {
        "identity": identity.long(),
        "sample": sample.long(),
        "modality": as_long(modality),
        "yaw": yaw.float() if yaw is not None else torch.full((n,), float("nan")),
        "resolution": as_long(resolution),
    }


def _cat(plans: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.cat([p[k] for p in plans]) for k in plans[0]}


def _unique_plan(plan: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """Deduplicate items; returns the unique plan and, per original item, its row in it."""
    cols = torch.stack([plan["identity"], plan["sample"], plan["modality"], plan["resolution"]], 1)
    uniq, inverse = torch.unique(cols, dim=0, return_inverse=True)
    first = torch.full((len(uniq),), len(inverse), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(inverse)), reduce="amin"
    )
    return {k: v[first] for k, v in plan.items()}, inverse
