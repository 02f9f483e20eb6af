"""Parameter names and values checked against what a component declares, before anything is built.

One mechanism for every component (backbones, heads, generators, datasets, protocols), for
``TrainConfig`` and for recipe parameter classes: :func:`check_names` refuses a name the constructor
does not take (with close matches and the accepted list), :func:`check` checks values. The type comes
from the constructor's annotation (else from its default), the allowed range from an optional
``param_ranges = {"name": (low, high)}`` class attribute or, for attrs classes, a field's
``metadata["range"]`` (either end may be ``None``; both inclusive). Only scalar annotations are
enforced (int, float, bool, str, paths, ``Literal``, ``None`` and unions of them); containers and
anything else pass through to the constructor, which still validates them. Integers must fit in int64
and floats must be finite whatever a component declares: nothing downstream can use 1e400 or 10**30.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

import attrs

from .errors import ParameterError

RANGES_ATTR = "param_ranges"
_INT64 = 2**63


def declared_ranges(obj: Any) -> dict[str, tuple[Any, Any]]:
    """``{name: (low, high)}`` a component (class or factory) declares for its parameters."""
    ranges = {}
    if isinstance(obj, type) and attrs.has(obj):  # attrs fields may carry their range (recipe knobs do)
        ranges = {
            f.name: tuple(f.metadata["range"])
            for f in attrs.fields(obj)
            if f.metadata.get("range", (None, None)) != (None, None)
        }
    return {**ranges, **(getattr(obj, RANGES_ATTR, None) or {})}


def _signature(obj: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return {}


def accepted(obj: Any) -> list[str] | None:
    """The keyword parameters ``obj`` takes; None when it takes any (``**kwargs``, or no readable signature)."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind != p.VAR_POSITIONAL and p.name != "self"]


def takes(obj: Any, key: str) -> bool:
    names = accepted(obj)
    return names is None or key in names


def check_names(obj: Any, keys: Iterable[str], owner: str, option: Callable[[str], str] | None = None) -> None:
    """Refuse the first key ``obj`` does not take: ``"<option(key)>: <owner> has no parameter 'k' (did you
    mean ...?); accepted: ..."`` (``owner`` says whose parameters, e.g. ``head 'arcface'``)."""
    names = accepted(obj)
    if names is None:
        return
    for key in keys:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            lead = f"{option(key)}: " if option is not None else ""
            raise ParameterError(
                f"{lead}{owner} has no parameter {key!r}{hint}; accepted: {', '.join(names) or 'none'}"
            )


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations of the constructor (string annotations evaluated where possible)."""
    target = typing.cast(Any, obj).__init__ if isinstance(obj, type) else obj  # a class: its constructor
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation naming something not importable here: resolve one by one
        pass
    module = getattr(inspect.getmodule(obj), "__dict__", {})
    names = {**vars(typing), **module}
    out = {}
    for name, p in _signature(obj).items():
        ann = p.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, names)  # noqa: S307 - annotations of installed code, as typing does
            except Exception:
                continue
        out[name] = ann
    return out


_SCALARS = (int, float, bool, str, type(None))


def _members(ann: Any) -> tuple[Any, ...] | None:
    """The scalar alternatives an annotation allows, or None when it is not (only) scalars."""
    origin = typing.get_origin(ann)
    if origin is typing.Union or isinstance(ann, types.UnionType):
        parts: list[Any] = []
        for arg in typing.get_args(ann):
            sub = _members(arg)
            if sub is None:
                return None
            parts.extend(sub)
        return tuple(parts)
    if origin is typing.Literal:
        return (("literal", typing.get_args(ann)),)
    if ann is None:
        return (type(None),)
    if ann in _SCALARS:
        return (ann,)
    if ann is os.PathLike or origin is os.PathLike or (isinstance(ann, type) and issubclass(ann, PurePath)):
        return ("path",)
    return None


def _infer(param: inspect.Parameter | None, hint: Any) -> tuple[Any, ...] | None:
    if hint is not None:
        found = _members(hint)
        if found is not None:
            return found
        return None  # annotated with something this module does not enforce
    if param is None or param.default is param.empty or param.default is None:
        return None
    for kind in (bool, int, float):  # exact types: True is also an int
        if type(param.default) is kind:
            return (kind,)
    return None


def _fits(value: Any, kind: Any, coerce: bool) -> tuple[bool, Any]:
    """Does ``value`` satisfy one alternative? Returns (ok, possibly converted value)."""
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, (bool,)) or type(value).__name__ == "bool_", value
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return ok and math.isfinite(float(value)), value
    if kind is str or kind == "path":
        if isinstance(value, (str, os.PathLike)):
            return True, value
        if coerce and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return True, str(value)  # `--param dataset.root=2024`: the literal parser made it a number
        return False, value
    if isinstance(kind, tuple) and kind[0] == "literal":
        return value in kind[1], value
    return True, value


def _describe(kinds: tuple[Any, ...]) -> str:
    words = []
    for k in kinds:
        if isinstance(k, tuple):
            words.append("one of " + ", ".join(repr(v) for v in k[1]))
        else:
            words.append(
                {
                    int: "an integer",
                    float: "a finite number",
                    bool: "true or false",
                    str: "a string",
                    "path": "a path",
                    type(None): "none",
                }[k]
            )
    return " or ".join(dict.fromkeys(words))


def _range_text(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    return f">= {low}" if low is not None else f"<= {high}"


def check_value(
    obj: Any, key: str, value: Any, *, coerce: bool = False, _known: tuple[dict, dict, dict] | None = None
) -> tuple[Any, str | None]:
    """``(value, None)`` when ``value`` suits parameter ``key`` of ``obj``, else ``(value, why)``.

    ``coerce`` turns numbers into strings for string parameters (values parsed from the command line).
    """
    signature, hints, ranges = _known or (_signature(obj), _hints(obj), declared_ranges(obj))
    kinds = _infer(signature.get(key), hints.get(key))
    if kinds is not None:
        for kind in kinds:
            ok, converted = _fits(value, kind, coerce)
            if ok:
                value = converted
                break
        else:
            return value, f"must be {_describe(kinds)}, got {value!r}"
    elif isinstance(value, float) and not math.isfinite(value):
        return value, f"must be a finite number, got {value!r}"
    low, high = ranges.get(key, (None, None))
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and ((low is not None and value < low) or (high is not None and value > high))
    ):
        return value, f"must be {_range_text(low, high)}, got {value!r}"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and not -_INT64 <= int(value) < _INT64:
        return value, f"must fit in 64 bits, got {value!r}"
    return value, None


def check(obj: Any, values: Mapping[str, Any], name: Callable[[str], str], *, coerce: bool = False) -> dict[str, Any]:
    """Check every ``values`` entry against ``obj``'s declarations; raise :class:`ParameterError` on the
    first bad one (``name(key)`` says how the user spelled it); return the (coerced) values."""
    out = dict(values)
    if not values:
        return out
    known = (_signature(obj), _hints(obj), declared_ranges(obj))
    for key, value in values.items():
        out[key], why = check_value(obj, key, value, coerce=coerce, _known=known)
        if why:
            raise ParameterError(f"{name(key)} {why}")
    return out


def describe(obj: Any) -> dict[str, dict[str, Any]]:
    """Per parameter: the enforced type (text) and declared range, for ``facerun info``."""
    hints, ranges, out = _hints(obj), declared_ranges(obj), {}
    for pname, p in _signature(obj).items():
        kinds = _infer(p, hints.get(pname))
        entry: dict[str, Any] = {}
        if kinds is not None:
            entry["type"] = _describe(kinds)
        if pname in ranges:
            entry["range"] = _range_text(*ranges[pname])
        out[pname] = entry
    return out


def check_device(device: str, option: str = "--device") -> str:
    """``device`` if torch can name it and, for CUDA, this machine has CUDA; else a one-line error."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ParameterError(f"{option} {device!r} is not a device (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"{option} {device!r}: facerec runs on cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"{option} {device}: CUDA is not available on this machine")
    return device


__all__ = [
    "RANGES_ATTR",
    "accepted",
    "check",
    "check_device",
    "check_names",
    "check_value",
    "declared_ranges",
    "describe",
    "takes",
]
