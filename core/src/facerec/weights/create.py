"""One step from a name and weights to a loaded model: a card's parameters and input spec applied and
checked (``facerec.create(kind, name, weights=...)`` and ``--weights`` go through here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from torch import nn

from ..api import InputSpec
from ..errors import WeightsError
from .catalog import WeightCard, card
from .fetch import ResolvedWeights, resolve_weights
from .loading import load_weights


def _spec_mismatch(card_spec: InputSpec, model_spec: InputSpec) -> str:
    """The fields where the card's input spec and the model's differ, as ``field card X vs model Y``."""
    a, b = attrs.asdict(card_spec), attrs.asdict(model_spec)
    return "; ".join(f"{k} card {a[k]!r} vs model {b[k]!r}" for k in a if a[k] != b[k])


def card_params(
    kind: str, name: str, weights: str | os.PathLike, params: Mapping[str, Any] | None = None
) -> tuple[WeightCard | None, dict[str, Any]]:
    """When ``weights`` names a registered card (not a file): check it is for ``kind`` ``name`` and return it
    with its constructor parameters merged with ``params`` (which may add to them, never contradict them).
    Nothing is fetched. For a file: ``(None, params)``."""
    from ..errors import ParameterError
    from ..registry import components

    given = dict(params or {})
    names = {x.name for x in components("weights")} | {x.qualified for x in components("weights")}
    c = card(str(weights)) if not Path(weights).is_file() and str(weights) in names else None
    if c is not None:
        if c.arch != name.rpartition(":")[2] or c.arch_kind != kind:
            raise WeightsError(f"weights {c.name!r} are for {c.arch_kind} {c.arch!r}, not {kind} {name!r}")
        clash = next((k for k in given if k in c.params and given[k] != c.params[k]), None)
        if clash is not None:
            raise ParameterError(
                f"{kind} {name!r}: parameter {clash}={given[clash]!r} contradicts weights "
                f"{c.name!r}, built with {clash}={c.params[clash]!r}"
            )
        given = {**c.params, **given}
    return c, given


def create_with_weights(
    kind: str,
    name: str,
    weights: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, ResolvedWeights]:
    """Build component ``name`` of ``kind`` and load ``weights`` (a file or a card name) strictly, in one step.

    A card must be for ``name`` and ``kind``; its ``params`` are the constructor's parameters, and an
    explicit parameter may add to them but not contradict them (the weights only fit the card's); its
    ``input_spec`` must equal the built model's. A file loads as ``--weights FILE`` does. Returns the
    model and what the weights resolved to (the provenance reports keep)."""
    from ..registry import create

    c, given = card_params(kind, name, weights, params)
    resolved = resolve_weights(weights, cache_dir) if c is None else None  # a file (or a clear error) first
    model = create(kind, name, **given)
    spec = getattr(model, "input_spec", None)
    if c is not None and c.input_spec is not None and spec is not None and spec != c.input_spec:
        raise WeightsError(
            f"weights {c.name!r}: the card's input spec does not match {kind} {name!r}: "
            f"{_spec_mismatch(c.input_spec, spec)}"
        )
    resolved = resolved or resolve_weights(weights, cache_dir)  # a card's file is fetched once all fits
    load_weights(model, resolved.path)
    return model, resolved
