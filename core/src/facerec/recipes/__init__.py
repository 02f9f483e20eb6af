"""Recipes: what ``facerun --backbone B [...]`` and ``facerun train`` run, and the toolkit plugins write
theirs with.

A recipe is an entry point in group ``facerec.recipes`` naming a function declared with :func:`recipe`:
``fn(config: PipelineConfig, run: RunDir, params) -> dict`` of final metrics, where ``params`` is an
instance of the recipe's attrs class of ``--param recipe.NAME=VALUE`` fields (:func:`knob`: type, quick
and paper defaults, range, help). The helpers build components with the user's parameters and the image
size the backbone wants (``build_*``, ``train_config``), evaluate (``evaluate_protocols``) and report
(``RunDir``, ``save_backbone``, ``write_summary``, ``markdown_table``), so recipes stay short.

Modules: ``config`` (parameters, the run config), ``declare`` (recipes and their parameters), ``rundir``,
``components`` (building them), ``evaluate``, ``summary``, ``checks`` (everything checked before work), ``runner``
(``run_pipeline``), ``standard`` (the standard recipe) and ``concat`` (its real + generated data).
Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

from .checks import resolve_recipe, validate
from .components import (
    build,
    build_backbone,
    build_dataset,
    build_generator,
    build_head,
    build_protocols,
    canonical_size,
    train_config,
)
from .config import (
    DEFAULT_DATASET,
    DEFAULT_HEAD,
    DEFAULT_PROTOCOL,
    PARAM_KINDS,
    PRESETS,
    PipelineConfig,
    literal,
    parse_assignments,
    parse_params,
)
from .declare import NoParams, Recipe, knob, recipe
from .evaluate import evaluate_protocols
from .rundir import RunDir, image_grid, save_backbone
from .runner import run_pipeline
from .summary import format_metrics, markdown_table, write_summary

#: names that import torch, loaded on first use so that ``import facerec.recipes`` stays cheap
_LAZY = {
    "CachedDataset": "..data.cache",
    "maybe_cache": "..data.cache",
    "LabelledConcat": ".concat",
    "StandardParams": ".standard",
    "standard_recipe": ".standard",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CachedDataset",
    "DEFAULT_DATASET",
    "DEFAULT_HEAD",
    "DEFAULT_PROTOCOL",
    "LabelledConcat",
    "NoParams",
    "PARAM_KINDS",
    "PRESETS",
    "PipelineConfig",
    "Recipe",
    "RunDir",
    "StandardParams",
    "build",
    "build_backbone",
    "build_dataset",
    "build_generator",
    "build_head",
    "build_protocols",
    "canonical_size",
    "evaluate_protocols",
    "format_metrics",
    "image_grid",
    "knob",
    "literal",
    "markdown_table",
    "maybe_cache",
    "parse_assignments",
    "parse_params",
    "recipe",
    "resolve_recipe",
    "run_pipeline",
    "save_backbone",
    "standard_recipe",
    "train_config",
    "validate",
    "write_summary",
]
