"""Components built from a run's configuration: the user's ``--param KIND.*`` values over a recipe's
overrides, and data rendered at the size the backbone wants, so that recipes stay short."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import params as P
from .. import registry
from ..errors import FacerecError
from .config import DEFAULT_DATASET, DEFAULT_HEAD, DEFAULT_PROTOCOL, PipelineConfig


def build(config: PipelineConfig, kind: str, name: str, *, image_size: int | None = None, **overrides: Any) -> Any:
    """Create ``kind`` ``name`` with the user's ``--param kind.*`` values over ``overrides`` (for heads the
    recipe's overrides win); passes ``image_size`` when the component takes it and the user did not set it.
    Keys the component does not take are left out (``--param`` names were checked before the run)."""
    params = {**overrides, **config.kind_params(kind)} if kind != "head" else {**config.kind_params(kind), **overrides}
    obj = registry.load(kind, name)
    if image_size is not None and "image_size" not in params and "image_size" in registry.parameters(obj):
        params["image_size"] = image_size
    params = {k: v for k, v in params.items() if P.takes(obj, k)}
    if kind == "protocol":
        from ..engine.validation_sets import ValidationSets, names_several

        if names_several(params.get("data")):  # data=DIR/*.bin: one protocol per set, evaluated together
            return ValidationSets(lambda data: registry.create(kind, name, **{**params, "data": data}), params["data"])
    return registry.create(kind, name, **params)


def build_backbone(config: PipelineConfig, **overrides: Any) -> Any:
    return build(config, "backbone", config.backbone, **overrides)


def canonical_size(backbone: Any) -> int:
    """The square canonical-image side the backbone wants its data rendered/loaded at."""
    return int(backbone.input_spec.canonical_size)


def build_dataset(config: PipelineConfig, backbone: Any, name: str | None = None, **overrides: Any) -> Any:
    return build(
        config, "dataset", name or config.dataset or DEFAULT_DATASET, image_size=canonical_size(backbone), **overrides
    )


def build_head(
    config: PipelineConfig, embedding_size: int, num_classes: int, name: str | None = None, **overrides: Any
) -> Any:
    """Head with the user's params; ``embedding_size``/``num_classes`` always come from the data."""
    params = {**overrides, **config.kind_params("head"), "embedding_size": embedding_size, "num_classes": num_classes}
    return registry.create("head", name or config.head or DEFAULT_HEAD, **params)


def build_generator(config: PipelineConfig, backbone: Any | None = None, **overrides: Any) -> Any:
    if not config.generator:
        raise FacerecError("this recipe needs --generator")
    size = canonical_size(backbone) if backbone is not None else None
    return build(config, "generator", config.generator, image_size=size, **overrides)


def build_protocols(
    config: PipelineConfig, backbone: Any, default: Sequence[str] = (DEFAULT_PROTOCOL,), **overrides: Any
) -> dict[str, Any]:
    """``{name: Protocol}`` for ``--protocol`` (or ``default``), rendered at the backbone's size."""
    names = config.protocols or tuple(default)
    return {n: build(config, "protocol", n, image_size=canonical_size(backbone), **overrides) for n in names}


def train_config(config: PipelineConfig, defaults: Mapping[str, Any] | None = None) -> Any:
    """TrainConfig from recipe ``defaults`` (per preset), then ``--param train.*``, with seed and device."""
    from ..engine.config import TrainConfig

    base = TrainConfig(seed=config.seed, device=config.device)
    if defaults:
        base = base.with_overrides(defaults)
    return base.with_overrides(config.kind_params("train"))


__all__ = [
    "build",
    "build_backbone",
    "build_dataset",
    "build_generator",
    "build_head",
    "build_protocols",
    "canonical_size",
    "train_config",
]
