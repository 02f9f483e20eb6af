"""Everything a run is told, checked before any heavy work: the recipe, every component name and its
``--param`` values, ``train.*``, ``recipe.*``, the stage and the device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import params as P
from .. import registry
from ..errors import ParameterError
from .config import PRESETS, PipelineConfig
from .declare import Recipe, as_recipe


def resolve_recipe(explicit: str | None, backbone: str, generator: str | None) -> str:
    """--recipe, else the generator class's ``recipe``, else the backbone class's, else ``standard``."""
    if explicit:
        return explicit
    if generator:
        found = getattr(registry.load("generator", generator), "recipe", None)
        if found:
            return str(found)
    found = getattr(registry.load("backbone", backbone), "recipe", None)
    return str(found) if found else "standard"


def check_component_params(kind: str, name: str, given: Mapping[str, Any], *, named: bool = True) -> dict[str, Any]:
    """Names, types and declared ranges of ``--param kind.*`` for component ``name``; returns the values
    (numbers given for string parameters become strings). A component the user did not name (a recipe's
    fallback) ignores keys it does not take, as :func:`facerec.recipes.build` does."""
    obj = registry.load(kind, name)
    if not named:
        given = {k: v for k, v in given.items() if P.takes(obj, k)}
    P.check_names(obj, given, f"{kind} {name!r}", lambda key: f"--param {kind}.{key}")
    return P.check(obj, given, lambda key: f"--param {kind}.{key} ({kind} {name})", coerce=True)


def validate(config: PipelineConfig) -> tuple[Recipe, Any]:
    """Check every name, parameter, stage and option; return the recipe and its resolved parameters.
    Checked values (coerced) replace the given ones in ``config.params``."""
    if config.preset not in PRESETS:
        raise ParameterError(f"--preset must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    registry.find("recipe", config.recipe)
    spec = as_recipe(registry.load("recipe", config.recipe), config.recipe)
    # components the recipe falls back to (its ``defaults``) get the user's --param values too
    defaults = spec.defaults
    chosen = [
        ("backbone", config.backbone, True),
        ("head", config.head or defaults.get("head"), bool(config.head)),
        ("generator", config.generator, True),
        ("dataset", config.dataset or defaults.get("dataset"), bool(config.dataset)),
    ]
    chosen += [
        ("protocol", p, bool(config.protocols)) for p in (config.protocols or tuple(defaults.get("protocols", ())))
    ]
    for kind, name, named in chosen:
        if name:
            registry.find(kind, name)
            checked = check_component_params(kind, name, config.kind_params(kind), named=named)
            config.params.setdefault(kind, {}).update(checked)
    from ..engine.config import TrainConfig

    train = P.check(TrainConfig, config.kind_params("train"), lambda key: f"train.{key}")
    TrainConfig().with_overrides(train)
    config.params.setdefault("recipe", {}).update(spec.check(config))
    params = spec.resolve(config)
    if config.stage is not None and config.stage not in spec.stages:
        raise ParameterError(
            f"--stage {config.stage!r}: recipe {config.recipe!r} has "
            + (f"stages {', '.join(spec.stages)}" if spec.stages else "no stages")
        )
    P.check_device(config.device)
    return spec, params


__all__ = ["check_component_params", "resolve_recipe", "validate"]
