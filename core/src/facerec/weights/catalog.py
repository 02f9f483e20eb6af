"""Weight cards: what a registered set of pretrained weights is (architecture, files, licence, input spec,
published metrics, origin), and the registry lookups ``card`` / ``cards``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..api import InputSpec
from ..errors import FacerecError, WeightsError

FORMATS = ("safetensors", "original")


@attrs.frozen
class WeightFile:
    """One file of a card: where to get it and its sha256 (hex).

    A file comes from the Hugging Face Hub (``hf_repo``), a ``url``, or an installed Python package:
    ``package="import_name:path/inside/the/package"``, found without importing the package;
    ``pip`` is the requirement that installs it (default: the import name), named when it is missing.
    """

    filename: str
    sha256: str = ""
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None  # path inside the repo; defaults to ``filename``
    revision: str | None = None
    package: str | None = attrs.field(default=None)
    pip: str | None = None

    @package.validator
    def _check_package(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            top, sep, rel = value.partition(":")
            if not (sep and top and rel) or "." in top:
                raise WeightsError(
                    f"WeightFile package must be 'import_name:path/in/package' (a top-level package), got {value!r}"
                )

    @property
    def where(self) -> str:
        """Where the file comes from, as ``facerun weights list`` shows it."""
        if self.package:
            return f"python package {self.pip or self.package.partition(':')[0]} ({self.package})"
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.hf_filename or self.filename}"
        return self.url or "?"


def _files(value: Any) -> tuple[WeightFile, ...]:
    return tuple(f if isinstance(f, WeightFile) else WeightFile(**f) for f in value)


@attrs.frozen
class WeightCard:
    """A registered set of pretrained weights and what is known about them."""

    name: str
    arch: str  # registered backbone or generator name
    files: tuple[WeightFile, ...] = attrs.field(converter=_files)
    licence: str = "unknown"
    input_spec: InputSpec | None = None
    metrics: Mapping[str, float] = attrs.field(factory=dict)  # published numbers, e.g. {"LFW": 99.8}
    origin: str = ""  # paper / repository / release the weights come from
    format: str = attrs.field(default="safetensors", validator=attrs.validators.in_(FORMATS))
    params: Mapping[str, Any] = attrs.field(factory=dict)  # constructor parameters of ``arch``
    arch_kind: str = "backbone"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def card(name: str) -> WeightCard:
    """The registered card ``name`` (a factory target is called)."""
    from ..registry import load

    obj = load("weights", name)
    if callable(obj) and not isinstance(obj, WeightCard):
        obj = obj()
    if not isinstance(obj, WeightCard):
        raise WeightsError(f"weights {name!r} is registered as {type(obj).__name__}, not a WeightCard")
    return obj


def cards() -> tuple[list[WeightCard], list[tuple[str, str]]]:
    """All registered cards, and (name, error) for those that fail to load."""
    from ..registry import components

    good, bad = [], []
    for comp in components("weights"):
        try:
            good.append(card(comp.qualified))
        except FacerecError as exc:
            bad.append((comp.name, str(exc)))
    return good, bad
