"""Plugins use only core's declared public API (docs/api.md).

A core module is public when each part of its dotted name is listed in its parent's ``__all__``, from
``facerec.__all__`` down; a name is public when it is in its module's ``__all__``. Every plugin's source
is parsed (not imported, so the plugins need not be installed) and every ``import``, ``from ... import``
and attribute read on a core module (``facerec.x``, ``M.x`` for ``from facerec import metrics as M``)
is checked against that.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import types
from pathlib import Path

import pytest

import facerec

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = sorted([*ROOT.glob("facerec_*/src"), *ROOT.glob("plugins/*/src")])
#: (plugin package, non-public core module) pairs tolerated while a plugin migrates: none
ALLOWED: set[tuple[str, str]] = set()


def _child(module: types.ModuleType, name: str) -> object:
    """``module.name``, importing it when it is a submodule of a package not imported yet (a package's
    attribute wins over its submodule of the same name, as in Python: ``synthetic.degrade`` is a function)."""
    try:
        return getattr(module, name)
    except AttributeError:
        full = f"{module.__name__}.{name}"
        if hasattr(module, "__path__") and importlib.util.find_spec(full) is not None:
            return importlib.import_module(full)
        raise


def public_module(dotted: str) -> types.ModuleType | None:
    """The module if it is public, else None."""
    module: types.ModuleType = facerec
    for part in dotted.split(".")[1:]:
        if part not in getattr(module, "__all__", ()):
            return None
        found = _child(module, part)
        if not isinstance(found, types.ModuleType):
            return None
        module = found
    return module


def public_modules() -> list[types.ModuleType]:
    """Every public module, walking the ``__all__`` lists from ``facerec`` down."""
    out, todo = [], [facerec]
    while todo:
        module = todo.pop()
        out.append(module)
        for name in getattr(module, "__all__", ()):
            found = _child(module, name)
            if isinstance(found, types.ModuleType):
                todo.append(found)
    return sorted(out, key=lambda m: m.__name__)


class _Checker(ast.NodeVisitor):
    """Collects ``"path:line: what"`` for every use of a non-public core module or name."""

    def __init__(self, where: str, allowed: set[str]):
        self.where, self.allowed, self.bad = where, allowed, []
        self.bound: dict[str, str] = {}  # local name -> the core module it names

    def _flag(self, node: ast.AST, what: str) -> None:
        self.bad.append(f"{self.where}:{node.lineno}: {what}")

    def _module(self, node: ast.AST, dotted: str) -> types.ModuleType | None:
        if dotted in self.allowed:
            return None
        module = public_module(dotted)
        if module is None:
            self._flag(node, f"module {dotted} is not public")
        return module

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] != "facerec":
                continue
            if self._module(node, alias.name) is not None or alias.name in self.allowed:
                self.bound[alias.asname or "facerec"] = alias.name if alias.asname else "facerec"

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or node.module.split(".")[0] != "facerec":
            return
        module = self._module(node, node.module)
        if module is None:
            return
        for alias in node.names:
            if f"{node.module}.{alias.name}" in self.allowed:
                self.bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif alias.name not in getattr(module, "__all__", ()):
                self._flag(node, f"{node.module}.{alias.name} is not public")
            elif isinstance(_child(module, alias.name), types.ModuleType):
                self.bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # a local variable with a module's name (``metrics = {}``) hides the module inside the function
        outer = dict(self.bound)
        args = node.args
        local = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for name in local:
            self.bound.pop(name, None)
        self.generic_visit(node)
        self.bound = outer

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in self.bound and self.bound[base.id] not in self.allowed:
            dotted = self.bound[base.id]
            module = importlib.import_module(dotted)
            for attr in reversed(chain):
                if attr not in getattr(module, "__all__", ()):
                    self._flag(node, f"{dotted}.{attr} is not public")
                    return  # the outer chain is reported once, not once per prefix
                found = _child(module, attr)
                if not isinstance(found, types.ModuleType):
                    return
                module, dotted = found, f"{dotted}.{attr}"
            return
        self.generic_visit(node)


def non_public_uses(source: str, where: str, allowed: set[str] = frozenset()) -> list[str]:
    checker = _Checker(where, set(allowed))
    checker.visit(ast.parse(source))
    return checker.bad


@pytest.mark.parametrize("src", PLUGIN_SOURCES, ids=lambda p: p.parent.name)
def test_plugins_use_only_the_public_api(src: Path):
    bad = []
    for path in sorted(src.rglob("*.py")):
        allowed = {mod for pkg, mod in ALLOWED if pkg == path.relative_to(src).parts[0]}
        bad += non_public_uses(path.read_text(), str(path.relative_to(ROOT)), allowed)
    assert not bad, "\n".join(bad)


def test_plugin_sources_were_found():
    names = {p.parent.name for p in PLUGIN_SOURCES}
    assert {
        "facerec_vec2face",
        "facerec_dcr",
        "facerec_virface",
        "facerec_vggface2",
        "facerec-dlib",
        "facerec-template",
    } <= names


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("from facerec.api import Backbone, InputSpec", []),
        ("from facerec.commands.extract import check_device", ["module facerec.commands.extract is not public"]),
        ("from facerec.engine import Trainer, no_such_name", ["facerec.engine.no_such_name is not public"]),
        ("import facerec\nfacerec.create('backbone', 'x')\nfacerec.cli.run()", ["facerec.cli is not public"]),
        ("from facerec import metrics as M\nM.rank_k\nM._private", ["facerec.metrics._private is not public"]),
        ("import facerec.data.formats as F\nF.ImageList\nF.re", ["facerec.data.formats.re is not public"]),
        ("from facerec import pipeline", ["facerec.pipeline is not public"]),
    ],
)
def test_the_check_flags_what_is_not_public(source, flagged):
    assert [b.split(": ", 1)[1] for b in non_public_uses(source, "x.py")] == flagged


def test_every_listed_name_exists():
    for module in public_modules():
        assert hasattr(module, "__all__"), f"{module.__name__} declares no __all__"
        assert len(set(module.__all__)) == len(module.__all__), f"{module.__name__}.__all__ has duplicates"
        for name in module.__all__:
            _child(module, name)  # raises AttributeError / ImportError when stale


def test_docs_api_lists_every_public_module():
    doc = (ROOT / "docs" / "api.md").read_text()
    listed = set(re.findall(r"^#+ `(facerec[\w.]*)`", doc, flags=re.M))
    assert listed == {m.__name__ for m in public_modules()}
