"""Fixtures of the dlib plugin's tests: the released model file and dlib itself (the reference).

Both come from the package registry through the project's install path (requirements/real-models.txt,
installed by the nox session ``dlib``). Where they are absent the tests that need them are skipped with
the reason; with FACEREC_REQUIRE_REAL_MODELS=1 (set by that nox session, so CI never skips them
silently) their absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

INSTALL = "pip install -r requirements/real-models.txt"


def _missing(reason: str) -> None:
    if os.environ.get("FACEREC_REQUIRE_REAL_MODELS") == "1":
        pytest.fail(f"{reason} (FACEREC_REQUIRE_REAL_MODELS=1: this environment must have it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dlib_dat() -> Path:
    """dlib_face_recognition_resnet_model_v1.dat from the face-recognition-models package (card dlib-resnet29)."""
    from facerec.errors import WeightsError
    from facerec.weights import resolve

    try:
        return resolve("dlib-resnet29")
    except WeightsError as exc:
        _missing(f"the dlib model file is not available ({exc}); {INSTALL}")


@pytest.fixture(scope="session")
def models_dir(dlib_dat) -> Path:
    """The folder of face-recognition-models' files (also the shape predictor and the mmod detector)."""
    return dlib_dat.parent


@pytest.fixture(scope="session")
def dlib():
    """dlib itself (the dlib-bin wheel): the reference the port is checked against, never a dependency."""
    try:
        import dlib as module
    except ImportError:
        _missing(f"dlib is not installed (the parity reference, from the dlib-bin wheel); {INSTALL}")
    return module


@pytest.fixture(scope="session")
def lfw_dir(shared_data) -> Path:
    return shared_data / "lfw"


@pytest.fixture(scope="session")
def mtcnn_weights() -> Path:
    """MTCNN's released weights from facenet-pytorch (README's install line; the nox session installs them)."""
    from facerec.data.detect.released import installed_folder

    folder = installed_folder()
    if folder is None:
        _missing("MTCNN weights absent: pip install --no-deps facenet-pytorch==2.6.0 (README's install line)")
    return folder
