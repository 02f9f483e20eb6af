"""Several validation sets evaluated as one protocol, the way arcface_torch's ``CallBackVerification``
runs the insightface ``.bin`` files (lfw, cfp_fp, agedb_30, calfw, cplfw) during training.

``--protocol pairs --param protocol.data=DIR/*.bin`` gives the protocol a glob (or a list) of data
files: each file becomes its own protocol instance, metrics are ``<set>/<metric>`` (the set named by
its file stem), and every set's best accuracy so far is reported as ``<set>/accuracy_highest``.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..api import EvalResult, Protocol
from ..errors import DataError

_GLOB_CHARS = frozenset("*?[")


def names_several(data: Any) -> bool:
    """True when a protocol's ``data`` value names several sets: a glob pattern or a list of paths."""
    if isinstance(data, (list, tuple)):
        return True
    return isinstance(data, str) and bool(_GLOB_CHARS & set(data)) and not Path(data).exists()


def expand(data: str | Sequence[str]) -> list[Path]:
    """The files a glob (or a list of paths and globs) names, sorted per pattern; an error when none do."""
    items = [data] if isinstance(data, str) else list(data)
    found: list[Path] = []
    for item in items:
        item = str(item)
        matches = sorted(glob.glob(item)) if _GLOB_CHARS & set(item) and not Path(item).exists() else [item]
        if not matches:
            raise DataError(f"protocol data {item!r} matches no file")
        found += [Path(m) for m in matches if Path(m) not in found]
    if not found:
        raise DataError("protocol data names no set")
    return found


def _labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the file stem, or parent/stem where stems repeat."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{p.parent.name}/{s}" for s, p in zip(stems, paths)]


class ValidationSets(Protocol):
    """One protocol per data file; ``evaluate`` runs them all and prefixes each one's metrics with
    its set name. Keeps each set's highest accuracy over the evaluations of this process."""

    def __init__(self, make: Callable[[str], Protocol], data: str | Sequence[str]):
        paths = expand(data)
        self.sets: dict[str, Protocol] = {name: make(str(p)) for name, p in zip(_labels(paths), paths)}
        self.highest: dict[str, float] = {}
        first = next(iter(self.sets.values()))
        self.convention = f"per set (metrics '<set>/<metric>'): {getattr(first, 'convention', '')}"

    def evaluate(self, model: Any, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        metrics: dict[str, float] = {}
        artefacts: dict[str, Any] = {}
        for name, proto in self.sets.items():
            result = proto.evaluate(model, device=device, batch_size=batch_size, progress=progress)
            self._collect(name, result, metrics, artefacts)
        return EvalResult(metrics, artefacts, self.convention)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        metrics: dict[str, float] = {}
        artefacts: dict[str, Any] = {}
        for name, proto in self.sets.items():
            self._collect(name, proto.evaluate_features(features), metrics, artefacts)
        return EvalResult(metrics, artefacts, self.convention)

    def _collect(self, name: str, result: EvalResult, metrics: dict[str, float], artefacts: dict[str, Any]) -> None:
        for key, value in result.metrics.items():
            metrics[f"{name}/{key}"] = float(value)
        accuracy = result.metrics.get("accuracy")
        if accuracy is not None and math.isfinite(float(accuracy)):
            self.highest[name] = max(self.highest.get(name, -math.inf), float(accuracy))
            metrics[f"{name}/accuracy_highest"] = self.highest[name]
        artefacts[name] = dict(result.artefacts)

    def __repr__(self) -> str:
        return f"ValidationSets({', '.join(self.sets)})"
