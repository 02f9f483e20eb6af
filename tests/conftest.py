"""Shared test helpers: parity fixtures, the real-face data folder, and running facerun as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(__file__).parent / "fixtures" / "parity"
SHARED_DATA = Path(os.environ.get("FACEREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $FACEREC_SHARED_DATA); tests using it are skipped where it is absent."""
    if not (SHARED_DATA / "lfw").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set FACEREC_SHARED_DATA)")
    return SHARED_DATA


def facerun(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the installed facerun console script in a subprocess, as a user would."""
    exe = Path(sys.executable).with_name("facerun")
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"facerun {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def run_facerun():
    return facerun


@pytest.fixture(scope="session")
def device() -> str:
    """Where device-aware tests run: $FACEREC_TEST_DEVICE (cpu by default, cuda on a GPU machine)."""
    import torch

    dev = os.environ.get("FACEREC_TEST_DEVICE", "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("FACEREC_TEST_DEVICE asks for CUDA but none is available")
    # Parity is defined in strict float32: no TF32 on Ampere+ GPUs.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return dev


def readme_table_commands(readme: Path, heading: str = "How to do what the original does") -> list[str]:
    """The ``facerun ...`` commands written as inline code in the table of section ``heading`` of a README,
    in order, each once: the README's commands are run as tests (tests/<plugin>/test_readme_commands.py)."""
    import re

    text = readme.read_text(encoding="utf-8")
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 3)
    section = text[start : end if end > 0 else len(text)]
    seen: list[str] = []
    rows = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    for cmd in re.findall(r"`(facerun [^`]+)`", rows):
        if cmd not in seen:
            seen.append(cmd)
    return seen


def run_readme_commands(
    commands: list[str],
    substitute: dict[str, str],
    *,
    cwd: Path,
    extra: dict[str, list[str]] | None = None,
    small: dict[str, str] | None = None,
    env: dict | None = None,
) -> dict[str, subprocess.CompletedProcess]:
    """Run README commands with their placeholders (whole words) replaced by small test data; ``small``
    maps an option to a smaller value (``--steps``: ``2``); ``extra`` appends options to commands starting
    with a prefix. Every command must succeed; returns the processes by README command."""
    import shlex

    import re

    done = {}
    for cmd in commands:
        tokens = shlex.split(cmd)[1:]
        for key, value in substitute.items():  # whole placeholders, also inside KEY=VALUE and paths
            pattern = re.compile(rf"(?<![\w.-]){re.escape(key)}(?![\w.-])")
            tokens = [pattern.sub(lambda _m: value, t) for t in tokens]
        for option, value in (small or {}).items():
            tokens = [value if i and tokens[i - 1] == option else t for i, t in enumerate(tokens)]
        for prefix, more in (extra or {}).items():
            if cmd.startswith(prefix):
                tokens += more
        done[cmd] = facerun(*tokens, cwd=cwd, env=env)
    return done


README = ROOT / "README.md"


def readme_code_blocks(readme: Path, heading: str) -> list[tuple[str, str]]:
    """(language, text) of each fenced code block in the README section whose heading contains ``heading``,
    up to the next heading of the same or a higher level."""
    import re

    lines = readme.read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("#") and heading in ln), None)
    if start is None:
        raise AssertionError(f"{readme}: no section heading containing {heading!r}")
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    section = []
    for ln in lines[start + 1 :]:
        m = re.match(r"(#+) ", ln)
        if m and len(m.group(1)) <= level:
            break
        section.append(ln)
    return [
        (lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", "\n".join(section) + "\n", flags=re.S | re.M)
    ]


def readme_shell_commands(readme: Path, heading: str) -> list[str]:
    """The shell commands of a README section's ``bash`` blocks as ``facerun ...`` strings, in order: lines
    split at ``&&``, the ``.venv/bin/`` prefix dropped, comments removed, package installs left out (the test
    environment is built from the same requirements). Any other command is an error, so that a README
    command the tests cannot run is noticed."""
    import shlex

    out = []
    for lang, body in readme_code_blocks(readme, heading):
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for cmd in filter(None, (c.strip() for c in line.split("&&"))):
                tokens = shlex.split(cmd)
                exe = tokens[0].removeprefix(".venv/bin/")
                if exe == "pip" and tokens[1] == "install":
                    continue
                if exe != "facerun":
                    raise AssertionError(f"README section {heading!r}: cannot run {cmd!r} as a test")
                out.append(shlex.join(["facerun", *tokens[1:]]))
    return out


def readme_python_blocks(readme: Path, heading: str) -> list[str]:
    return [body for lang, body in readme_code_blocks(readme, heading) if lang == "python"]


@pytest.fixture(scope="session")
def readme():
    """``readme.commands(README)`` lists a README table's facerun commands; ``readme.run(...)`` runs them;
    ``readme.shell(README, heading)`` / ``readme.python(...)`` give a section's shell commands / Python code."""
    import types

    return types.SimpleNamespace(
        commands=readme_table_commands,
        run=run_readme_commands,
        root=README,
        shell=readme_shell_commands,
        python=readme_python_blocks,
    )
