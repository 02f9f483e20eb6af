"""Registry behaviour with real plugins installed by pip: broken, duplicate-name and wrong-API plugins.

The fake plugins are real distributions built from pyproject.toml and installed with
``pip install --target`` into a temporary folder that subprocesses put on PYTHONPATH, so the
environment under test (core's own) is never modified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import facerec
from facerec import registry
from facerec.errors import ComponentLoadError, ParameterError, UnknownComponentError

PLUGINS = {
    # an import error at load time (a module that does not exist inside the plugin)
    "facerec-broken": (
        "facerec_broken",
        "FACEREC_API = 1\n",
        {"facerec.backbones": {"broken-net": "facerec_broken.net:Net"}},
        ["facerec-core>=1.0,<2"],
        {},
    ),
    # registers a name core already has, plus one of its own
    "facerec-dupe": (
        "facerec_dupe",
        "FACEREC_API = 1\n",
        {"facerec.backbones": {"small-cnn": "facerec_dupe.net:Net", "dupe-only": "facerec_dupe.net:Net"}},
        ["facerec-core>=1.0,<2"],
        {
            "net.py": '"""Dupe net: a copy registered under a taken name."""\n'
            "from facerec.nn import SmallCNN\n\n"
            'class Net(SmallCNN):\n    """The duplicate network."""\n'
        },
    ),
    # built for a future core: refused from metadata alone
    "facerec-future": (
        "facerec_future",
        "FACEREC_API = 2\n",
        {"facerec.heads": {"future-head": "facerec_future:Head"}},
        ["facerec-core>=2.0"],
        {},
    ),
    # a command named like core's `train` (plus core's own `train` must stay reachable)
    "facerec-clash": (
        "facerec_clash",
        "FACEREC_API = 1\n",
        {"facerec.commands": {"train": "facerec_clash.cmd:train"}},
        ["facerec-core>=1.0,<2"],
        {
            "cmd.py": "import click\n\n\n@click.command()\ndef train():\n"
            '    """The clashing train command."""\n    click.echo("clash train ran")\n'
        },
    ),
    # declares the wrong API in code only
    "facerec-oldapi": (
        "facerec_oldapi",
        "FACEREC_API = 0\nHead = object\n",
        {"facerec.heads": {"old-head": "facerec_oldapi:Head"}},
        ["facerec-core"],
        {},
    ),
}


def _write_plugin(root: Path, dist: str, package: str, init: str, eps: dict, deps: list, files: dict) -> Path:
    src = root / dist
    (src / "src" / package).mkdir(parents=True)
    ep_text = "".join(
        f'\n[project.entry-points."{g}"]\n' + "".join(f'"{n}" = "{t}"\n' for n, t in v.items()) for g, v in eps.items()
    )
    (src / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.3.0"
        dependencies = {json.dumps(deps)}
        [tool.setuptools.packages.find]
        where = ["src"]
        """)
        + ep_text
    )
    (src / "src" / package / "__init__.py").write_text(f'"""{dist} test plugin."""\n{init}')
    for name, text in files.items():
        (src / "src" / package / name).write_text(text)
    return src


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    sources = [_write_plugin(root, d, *spec) for d, spec in PLUGINS.items()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _facerun(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    exe = Path(sys.executable).with_name("facerun")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def _python(site: Path | None, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHONPATH": str(site)} if site else {})}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_listing_imports_neither_torch_nor_plugins(plugin_site):
    code = textwrap.dedent("""
        import sys
        from facerec.cli import main
        for args in (["--help"], ["plugins"], ["plugins", "--json"]):
            try:
                main(args, standalone_mode=False)
            except SystemExit:
                pass
        heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("facerec_", "numpy")))
        assert not heavy, heavy
        print("clean")
    """)
    proc = _python(plugin_site, code)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr


def test_broken_plugin_is_reported_and_others_still_work(plugin_site):
    rows = json.loads(_facerun(plugin_site, "plugins", "--json", "--check").stdout)
    broken = next(r for r in rows if r["name"] == "broken-net")
    assert broken["distribution"] == "facerec-broken"
    assert "ModuleNotFoundError" in broken["error"] and "facerec_broken.net" in broken["error"]
    assert next(r for r in rows if r["name"] == "dupe-only")["error"] is None
    # asking for it gives one clear line, no traceback
    proc = _facerun(plugin_site, "info", "backbone", "broken-net")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "facerec-broken" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # other components of other plugins are unaffected
    ok = _facerun(plugin_site, "info", "backbone", "dupe-only")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("qualified", "doc"), [("facerec-dupe:small-cnn", "duplicate"), ("facerec-core:small-cnn", "Small 4-stage")]
)
def test_a_distribution_prefix_selects_among_duplicates(plugin_site, qualified, doc):
    proc = _facerun(plugin_site, "info", "backbone", qualified, "--json")
    assert proc.returncode == 0, proc.stderr
    assert doc in json.loads(proc.stdout)["summary"]


def test_duplicate_names_are_an_error_naming_both(plugin_site):
    proc = _facerun(plugin_site, "info", "backbone", "small-cnn")
    assert proc.returncode != 0
    assert "facerec-core" in proc.stderr and "facerec-dupe" in proc.stderr and "Traceback" not in proc.stderr
    listed = json.loads(_facerun(plugin_site, "plugins", "--json").stdout)
    dup_rows = [r for r in listed if r["name"] == "small-cnn"]
    assert len(dup_rows) == 2 and all("duplicate" in r["error"] for r in dup_rows)


def test_plugin_for_another_api_major_is_refused(plugin_site):
    rows = {r["name"]: r for r in json.loads(_facerun(plugin_site, "plugins", "--json").stdout)}
    assert "facerec-core >=2.0" in rows["future-head"]["error"] or ">=2.0" in rows["future-head"]["error"]
    proc = _facerun(plugin_site, "info", "head", "future-head")
    assert proc.returncode != 0 and "API" in proc.stderr
    proc = _facerun(plugin_site, "info", "head", "old-head")
    assert proc.returncode != 0 and "built for facerec API 0" in proc.stderr


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownComponentError, match="did you mean small-cnn"):
        registry.find("backbone", "small-cn")
    with pytest.raises(UnknownComponentError, match="did you mean backbone"):
        registry.components("backbones")


def test_create_validates_parameters_and_describe_reports_them():
    with pytest.raises(ParameterError, match="no parameter 'widht'.*width"):
        facerec.create("backbone", "small-cnn", widht=8)
    model = facerec.create("backbone", "small-cnn", width=8, embedding_size=16)
    assert model.embedding_size == 16
    info = facerec.describe("backbone", "small-cnn")
    assert info["parameters"]["width"]["default"] == 32
    assert info["input_spec"]["size"] == (112, 112)
    assert info["distribution"] == "facerec-core"


def test_components_reads_metadata_without_loading():
    comps = facerec.components("head")
    names = {c.name for c in comps}
    assert {"softmax", "cosface", "arcface", "combined", "partial-fc"} <= names
    core_head = next(c for c in comps if c.name == "arcface")
    assert core_head.distribution == "facerec-core" and core_head.version == facerec.__version__


def test_load_errors_name_the_plugin(monkeypatch):
    comp = registry.Component(
        name="ghost", kind="backbone", distribution="facerec-ghost", version="1", target="facerec_ghost_missing.net:Net"
    )
    monkeypatch.setattr(registry, "_scan", lambda kind: (comp,) if kind == "backbone" else ())
    with pytest.raises(ComponentLoadError, match="facerec-ghost"):
        registry.load("backbone", "ghost")


def test_plugin_command_named_like_a_core_command_keeps_core_reachable(plugin_site):
    """Issue 23 item 12: a plugin's `train` is a duplicate naming both distributions; plain `train` is core's."""
    proc = _facerun(plugin_site, "train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Train a backbone" in proc.stdout and "Traceback" not in proc.stderr
    note = proc.stderr.strip().splitlines()
    assert len(note) == 1 and "facerec-clash" in note[0] and "facerun facerec-clash:train" in note[0]
    ran = _facerun(plugin_site, "facerec-clash:train")
    assert ran.returncode == 0 and "clash train ran" in ran.stdout, ran.stderr
    rows = [
        r
        for r in json.loads(_facerun(plugin_site, "plugins", "--json").stdout)
        if r["kind"] == "command" and r["name"] == "train"
    ]
    assert {r["distribution"] for r in rows} == {"facerec-core", "facerec-clash"}
    assert all("duplicate" in r["error"] and "`facerun train` runs facerec-core's" in r["error"] for r in rows)
    assert "facerec-clash:train" in next(r["error"] for r in rows if r["distribution"] == "facerec-clash")


def test_plugins_check_exits_non_zero_with_a_summary(plugin_site):
    """Issue 23 item 13: `plugins --check` fails when a component does not load, with one summary line."""
    proc = _facerun(plugin_site, "plugins", "--check")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed to load" in lines[0] and "broken-net (facerec-broken)" in lines[0]
    assert "broken-net" in proc.stdout  # the listing itself is still printed
