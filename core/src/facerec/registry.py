"""Entry-point discovery, lookup, conflicts and broken-plugin isolation.

Listing reads installed metadata only: no plugin module (and no torch) is imported. A one-line
summary is read from the component's docstring in its source file with ``ast``. Components are
imported when someone builds or describes them; failures there name the plugin and never affect
other plugins.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.metadata as md
import importlib.util
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .errors import ComponentLoadError, DuplicateComponentError, ParameterError, UnknownComponentError

from ._version import API_VERSION

API_MAJOR = int(API_VERSION.split(".")[0])

#: kind -> entry-point group. Core's built-ins register through the same groups.
GROUPS = {
    "backbone": "facerec.backbones",
    "head": "facerec.heads",
    "generator": "facerec.generators",
    "dataset": "facerec.datasets",
    "protocol": "facerec.protocols",
    "detector": "facerec.detectors",
    "weights": "facerec.weights",
    "template": "facerec.templates",
    "weight-format": "facerec.weight_formats",
    "recipe": "facerec.recipes",
    "command": "facerec.commands",
}
KINDS = tuple(GROUPS)
CORE_DIST = "facerec-core"


@attrs.frozen
class Component:
    """One registered component, as the metadata describes it (nothing imported)."""

    name: str
    kind: str
    distribution: str
    version: str
    target: str
    summary: str = ""
    error: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.distribution}:{self.name}"


def _dist_name(dist: md.Distribution | None) -> str:
    if dist is None:
        return "?"
    return (dist.metadata["Name"] or "?").lower().replace("_", "-")


def _api_problem(dist: md.Distribution | None) -> str | None:
    """A plugin whose requirement on facerec-core excludes this core's API major version is refused."""
    if dist is None or _dist_name(dist) == CORE_DIST:
        return None
    from packaging.requirements import Requirement

    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except Exception:
            continue
        if req.name.lower().replace("_", "-") == CORE_DIST and req.specifier:
            if not req.specifier.contains(f"{API_MAJOR}.99", prereleases=True) and not req.specifier.contains(
                f"{API_MAJOR}.0", prereleases=True
            ):
                return (
                    f"built for facerec-core {req.specifier}, but this is facerec API {API_VERSION}; "
                    f"install a release of {_dist_name(dist)} made for API {API_MAJOR}.x"
                )
    return None


@functools.lru_cache(maxsize=None)
def _source_file(module: str) -> Path | None:
    """Locate a module's source without importing it (nor its parent packages)."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin else None
    for base in spec.submodule_search_locations or ():
        path = Path(base, *rest.split("."))
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=None)
def _docstrings(path: Path) -> dict[str, str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    out = {"": ast.get_docstring(tree) or ""}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            out[node.name] = ast.get_docstring(node) or ""
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            # module-level instances such as weight cards: summarise their literal keywords
            words = {
                k.arg: k.value.value
                for k in node.value.keywords
                if k.arg and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
            }
            text = "; ".join(words[k] for k in ("arch", "origin", "licence") if words.get(k))
            for target in node.targets:
                if isinstance(target, ast.Name) and text:
                    out[target.id] = (f"for {text}" if words.get("arch") else text).replace("\n", " ")
    return out


def _summary(target: str) -> str:
    module, _, attr = target.partition(":")
    path = _source_file(module.strip())
    if path is None:
        return ""
    docs = _docstrings(path)
    text = docs.get(attr.strip().split(".")[0], "") or docs.get("", "")
    return text.strip().splitlines()[0] if text.strip() else ""


@functools.lru_cache(maxsize=None)
def _scan(kind: str) -> tuple[Component, ...]:
    group = GROUPS[kind]
    seen: dict[tuple[str, str], Component] = {}
    for ep in md.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        dname = _dist_name(dist)
        key = (ep.name, dname)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen[key] = Component(
            name=ep.name,
            kind=kind,
            distribution=dname,
            version=(dist.version if dist else "?"),
            target=ep.value,
            summary=_summary(ep.value),
            error=_api_problem(dist),
        )
    return tuple(sorted(seen.values(), key=lambda c: (c.name, c.distribution)))


def refresh() -> None:
    """Forget cached metadata (after installing or removing a plugin in-process)."""
    _scan.cache_clear()
    _source_file.cache_clear()
    _docstrings.cache_clear()
    importlib.invalidate_caches()


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        close = difflib.get_close_matches(kind, KINDS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownComponentError(f"unknown component kind {kind!r}{hint}; kinds: {', '.join(KINDS)}")
    return kind


def components(kind: str | None = None) -> list[Component]:
    """What is installed, by kind (all kinds when None), without importing any plugin."""
    kinds: Iterable[str] = KINDS if kind is None else (_check_kind(kind),)
    return [c for k in kinds for c in _scan(k)]


def find(kind: str, name: str) -> Component:
    """Resolve ``name`` or ``dist:name`` to exactly one component, with helpful errors."""
    _check_kind(kind)
    dist, sep, short = name.rpartition(":")
    found = [c for c in _scan(kind) if c.name == short and (not sep or c.distribution == dist.lower())]
    if not found:
        names = sorted({c.name for c in _scan(kind)})
        close = difflib.get_close_matches(short, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; installed: {', '.join(names) or 'none'}"
        where = f" in distribution {dist!r}" if sep else ""
        raise UnknownComponentError(f"no {kind} named {short!r}{where}{hint}")
    if len(found) > 1:
        both = " and ".join(f"{c.distribution} {c.version}" for c in found)
        raise DuplicateComponentError(
            f"{kind} {short!r} is registered by {both}; pick one with " + " or ".join(repr(c.qualified) for c in found)
        )
    return found[0]


def _check_plugin_api(comp: Component) -> None:
    if comp.error:
        raise ComponentLoadError(f"{comp.kind} {comp.name!r} from {comp.distribution} {comp.version}: {comp.error}")
    if comp.distribution == CORE_DIST:
        return
    top = comp.target.split(":")[0].split(".")[0].strip()
    package = importlib.import_module(top)
    declared = getattr(package, "FACEREC_API", None)
    if declared is None:
        raise ComponentLoadError(f"plugin {comp.distribution} does not declare FACEREC_API in {top}/__init__.py")
    if int(str(declared).split(".")[0]) != API_MAJOR:
        raise ComponentLoadError(
            f"plugin {comp.distribution} {comp.version} was built for facerec API {declared}, "
            f"but this core provides API {API_VERSION}; install a matching release"
        )


def load(kind: str, name: str) -> Any:
    """Import and return the registered object (class or factory)."""
    comp = find(kind, name)
    try:
        _check_plugin_api(comp)
        module, _, attr = comp.target.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr else ():
            obj = getattr(obj, part)
    except ComponentLoadError:
        raise
    except Exception as exc:  # a broken plugin is reported, never fatal to others
        raise ComponentLoadError(
            f"{kind} {comp.name!r} from {comp.distribution} {comp.version} failed to load "
            f"({comp.target}): {type(exc).__name__}: {exc}"
        ) from exc
    return obj


def parameters(obj: Any) -> dict[str, inspect.Parameter]:
    """Keyword parameters a factory or class accepts (excluding *args/**kwargs)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return {}
    return {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"}


def create(kind: str, name: str, *, weights: Any = None, **params: Any) -> Any:
    """Build a component. Unknown parameters are refused with the list of accepted ones; values are
    checked against the declared types and ranges (:mod:`facerec.params`) before the constructor runs.

    ``weights`` (a weight card's name or a file, as ``--weights`` takes) builds and loads in one step:
    the card's parameters apply, its input spec is checked against the model, the load is strict
    (:func:`facerec.weights.create_with_weights`). A component whose constructor takes ``weights``
    itself (MTCNN) receives it unchanged."""
    from . import params as P

    obj = load(kind, name)
    if weights is not None:
        if "weights" not in parameters(obj):
            from .weights import create_with_weights

            return create_with_weights(kind, name, weights, params)[0]
        params = {**params, "weights": weights}
    P.check_names(obj, sorted(params), f"{kind} {name!r}")
    params = P.check(obj, params, lambda key: f"{kind} {name!r}: parameter {key}")
    try:
        return obj(**params)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"{kind} {name!r}: {exc}") from exc
    except (RuntimeError, OverflowError, MemoryError) as exc:
        # e.g. a size no range was declared for: torch cannot allocate it (or a negative dimension)
        given = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "its defaults"
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"{kind} {name!r} cannot be built with {given}: {type(exc).__name__}: {why}") from None


def describe(kind: str, name: str) -> dict[str, Any]:
    """Parameters with defaults, input spec, paper, summary and weights available for a component."""
    comp = find(kind, name)
    obj = load(kind, name)
    from . import params as P

    declared = P.describe(obj)
    params = {}
    for pname, p in parameters(obj).items():
        params[pname] = {
            "default": None if p.default is p.empty else p.default,
            "required": p.default is p.empty,
            "annotation": None if p.annotation is p.empty else str(p.annotation),
            **declared.get(pname, {}),
        }
    # a registered instance (a card, a template, a weight format) is summarised by its own words, not its class's
    doc = (inspect.getdoc(obj) or "") if inspect.isclass(obj) or inspect.isroutine(obj) else ""
    info: dict[str, Any] = {
        "name": comp.name,
        "kind": kind,
        "distribution": comp.distribution,
        "version": comp.version,
        "target": comp.target,
        "summary": doc.splitlines()[0] if doc else comp.summary,
        "doc": doc,
        "parameters": params,
        "paper": getattr(obj, "paper", "") or "",
    }
    spec = getattr(obj, "input_spec", None)
    if spec is not None and attrs.has(type(spec)):
        info["input_spec"] = attrs.asdict(spec)
    if kind == "backbone":
        info["embedding_size"] = getattr(obj, "embedding_size", None)
    if kind in ("backbone", "detector"):
        info["weights"] = [c.name for c in components("weights") if _card_arch(c) == name]
    if kind == "recipe":  # its parameters are its params class's fields, not the function's arguments
        from .recipes.declare import describe as describe_recipe

        found = describe_recipe(obj, name)
        info.update(found, summary=found["summary"] or comp.summary)
    return info


def _card_arch(comp: Component) -> str | None:
    try:
        card = load("weights", comp.qualified)
        if callable(card) and not hasattr(card, "arch"):  # a factory returning the card
            card = card()
    except Exception:
        return None
    return getattr(card, "arch", None)


__all__ = ["GROUPS", "KINDS", "Component", "components", "find", "load", "parameters", "create", "describe", "refresh"]
