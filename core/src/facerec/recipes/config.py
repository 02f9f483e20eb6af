"""A run's configuration: ``--param KIND.KEY=VALUE`` parsing and :class:`PipelineConfig`, what
``config.json`` records (the names chosen, the preset, and every kind's parameters as given)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

import attrs

from ..errors import ParameterError

PARAM_KINDS = ("backbone", "head", "generator", "dataset", "protocol", "train", "recipe")
PRESETS = ("quick", "paper")
DEFAULT_DATASET = "synthetic"
DEFAULT_HEAD = "arcface"
DEFAULT_PROTOCOL = "synthetic-pairs"


def literal(text: str) -> Any:
    """A command-line value: true/false/none words, numbers and Python literals; anything else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    if lowered.lstrip("+-") in ("nan", "inf", "infinity"):
        return float(lowered)  # a number (refused later where a finite one is needed), not a string
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text  # a plain string
    return value


def parse_assignments(items: Iterable[str], option: str) -> dict[str, Any]:
    """``("width=16", "name=x")`` given with ``option`` -> ``{"width": 16, "name": "x"}``
    (values as :func:`literal`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = literal(value)
    return out


def parse_params(params: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``("backbone.width=16", "train.steps=20")`` -> ``{"backbone": {"width": 16}, "train": {"steps": 20}}``."""
    out: dict[str, dict[str, Any]] = {k: {} for k in PARAM_KINDS}
    for item in params:
        key, sep, value = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ParameterError(f"--param {item!r}: expected KIND.KEY=VALUE (e.g. train.steps=20)")
        if kind not in PARAM_KINDS:
            raise ParameterError(f"--param {item!r}: unknown kind {kind!r}; kinds: {', '.join(PARAM_KINDS)}")
        out[kind][name] = literal(value)
    return out


def names(values: Iterable[str]) -> tuple[str, ...]:
    """The converter of name-tuple fields (typed: with ``converter=tuple`` mypy cannot infer the items)."""
    return tuple(values)


@attrs.define(kw_only=True)
class PipelineConfig:
    """The resolved configuration of one run (written to ``config.json``).

    ``params`` maps a kind (backbone, head, generator, dataset, protocol, train, recipe) to keyword
    overrides; ``protocols`` are names (default: the recipe's); ``stage`` selects a recipe stage.
    """

    backbone: str
    head: str | None = None
    generator: str | None = None
    dataset: str | None = None
    protocols: tuple[str, ...] = attrs.field(default=(), converter=names)
    preset: str = "quick"
    seed: int = 0
    device: str = "cpu"
    recipe: str = "standard"
    stage: str | None = None
    resume: bool = False
    out: str = ""
    params: dict[str, dict[str, Any]] = attrs.field(factory=lambda: {k: {} for k in PARAM_KINDS})

    def kind_params(self, kind: str) -> dict[str, Any]:
        return dict(self.params.get(kind, {}))

    @property
    def quick(self) -> bool:
        return self.preset == "quick"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_HEAD",
    "DEFAULT_PROTOCOL",
    "PARAM_KINDS",
    "PRESETS",
    "PipelineConfig",
    "literal",
    "parse_params",
]
