"""Declaring a recipe: its function, its parameter class, its stages and the components it falls back to.

    @attrs.frozen
    class MyParams:
        gen_steps: int = knob(50, paper=5000, low=1, help="generator training steps")
        mode: Literal["fast", "exact"] = knob("fast", paper="exact")

    @recipe(params=MyParams, stages=("one", "two"), defaults={"dataset": "synthetic"})
    def my_recipe(config: PipelineConfig, run: RunDir, params: MyParams) -> dict[str, Any]:
        ...

Each field is one ``--param recipe.NAME=VALUE``: its type comes from the annotation, its range, help and
paper-preset default from :func:`knob` (the first value is the quick preset's, and the paper preset's
unless ``paper=`` says otherwise). Values go through :mod:`facerec.params`, the check every component
parameter goes through, before any work; ``facerun info recipe NAME`` lists the fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .. import params as P
from ..errors import FacerecError, ParameterError
from .config import names

if TYPE_CHECKING:
    from .config import PipelineConfig

_SAME = object()


def knob(
    quick: Any, paper: Any = _SAME, *, low: float | None = None, high: float | None = None, help: str = "", **field: Any
) -> Any:
    """A recipe parameter: its quick-preset default, the paper preset's when different, an inclusive range
    (``None``: open end) and one line of help. Other keywords go to ``attrs.field`` (e.g. ``converter``)."""
    metadata: dict[str, Any] = {"range": (low, high), "help": help}
    if paper is not _SAME:
        metadata["paper"] = paper
    return attrs.field(default=quick, metadata=metadata, **field)


@attrs.frozen
class NoParams:
    """The parameters of a recipe that declares none."""


def _default(field: attrs.Attribute) -> Any:
    value: Any = field.default
    # attrs' stubs declare Factory a function; at run time it is the class of `factory=` defaults
    return value.factory() if isinstance(value, attrs.Factory) else value  # type: ignore[arg-type]


@attrs.frozen
class Recipe:
    """A registered recipe: ``fn(config, run, params) -> metrics`` with its parameter class, its ``--stage``
    values and the components it falls back to (``head``, ``dataset``, ``protocols``), whose
    ``--param`` values are then checked before any work too."""

    fn: Callable[..., Mapping[str, Any]]
    params: type = NoParams
    stages: tuple[str, ...] = attrs.field(default=(), converter=names)
    defaults: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def preset_values(self, preset: str) -> dict[str, Any]:
        """Fields whose default differs in ``preset`` (the quick preset's are the fields' own)."""
        if preset != "paper":
            return {}
        return {f.name: f.metadata["paper"] for f in attrs.fields(self.params) if "paper" in f.metadata}

    def check(self, config: PipelineConfig) -> dict[str, Any]:
        """The ``--param recipe.*`` values, checked (names, types, ranges) and coerced."""
        given = config.kind_params("recipe")
        owner = f"recipe {config.recipe!r}"
        P.check_names(self.params, given, owner, lambda key: f"--param recipe.{key}")
        return P.check(self.params, given, lambda key: f"--param recipe.{key} (recipe {config.recipe})", coerce=True)

    def resolve(self, config: PipelineConfig) -> Any:
        """The parameters for ``config``: its preset's defaults under the user's ``--param recipe.*``."""
        values = {**self.preset_values(config.preset), **self.check(config)}
        try:
            return self.params(**values)
        except ParameterError:
            raise
        except (TypeError, ValueError) as exc:  # a cross-field check of the class
            raise ParameterError(f"recipe {config.recipe!r}: {exc}") from None

    def __call__(self, config: PipelineConfig, run: Any, params: Any = None) -> Mapping[str, Any]:
        return self.fn(config, run, self.resolve(config) if params is None else params)

    def parameter_table(self) -> dict[str, dict[str, Any]]:
        """Per field: type and range (as every component's), quick and paper defaults, help."""
        declared = P.describe(self.params)
        out = {}
        for f in attrs.fields(self.params):
            quick = _default(f)
            out[f.name] = {
                "default": quick,
                "required": False,
                "annotation": str(f.type),
                "quick": quick,
                "paper": f.metadata.get("paper", quick),
                "help": f.metadata.get("help", ""),
                **declared.get(f.name, {}),
            }
        return out


def recipe(
    *, params: type = NoParams, stages: Sequence[str] = (), defaults: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., Mapping[str, Any]]], Recipe]:
    """Declare a recipe (see the module doc); the entry point names the decorated function."""
    if not (isinstance(params, type) and attrs.has(params)):
        raise TypeError(f"recipe params must be an attrs class, got {params!r}")
    missing = [f.name for f in attrs.fields(params) if f.default is attrs.NOTHING]
    if missing:
        raise TypeError(f"recipe params {params.__name__}: every field needs a default (knob), not {missing}")

    def wrap(fn: Callable[..., Mapping[str, Any]]) -> Recipe:
        return Recipe(fn=fn, params=params, stages=tuple(stages), defaults=dict(defaults or {}))

    return wrap


def as_recipe(obj: Any, name: str) -> Recipe:
    """What the registry holds for recipe ``name``, as a :class:`Recipe`."""
    if isinstance(obj, Recipe):
        return obj
    if not callable(obj):
        raise FacerecError(f"recipe {name!r} is not callable")
    raise FacerecError(
        f"recipe {name!r} is a plain function: declare it with facerec.recipes.recipe (docs/writing-a-plugin.md)"
    )


def describe(obj: Any, name: str) -> dict[str, Any]:
    """``facerun info recipe NAME``: summary, parameters (quick and paper defaults), stages, fallbacks."""
    spec = as_recipe(obj, name)
    return {
        "doc": spec.doc,
        "summary": spec.doc.splitlines()[0] if spec.doc else "",
        "parameters": spec.parameter_table(),
        "stages": list(spec.stages),
        "defaults": dict(spec.defaults),
    }


__all__ = ["NoParams", "Recipe", "as_recipe", "describe", "knob", "recipe"]
