"""facerec: an open face-recognition research toolkit with a plugin registry.

``import facerec`` is cheap (no torch): the registry functions are available at once and the
rest of the public API is imported on first use.
"""

from ._version import API_VERSION, __version__
from .errors import FacerecError
from .registry import components, create, describe, load

__all__ = ["API_VERSION", "__version__", "FacerecError", "components", "create", "describe", "load",
           "load_weights", "api"]


def __getattr__(name: str):
    # Heavy parts (torch) load lazily so that listing plugins stays fast.
    if name == "load_weights":
        from .weights import load_weights

        return load_weights
    if name in {"api", "metrics", "data", "engine", "heads", "nn", "protocols", "weights"}:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'facerec' has no attribute {name!r}")
