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


def facerun(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            check: bool = True) -> subprocess.CompletedProcess:
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
