"""facerec: an open face-recognition research toolkit with a plugin registry.

``import facerec`` is cheap (no torch): the registry functions are available at once and the
rest of the public API is imported on first use.

The public API is what ``__all__`` lists, here and in each public module (docs/api.md): a module is
public when its name is in its parent's ``__all__``. Plugins and users import only that; every other
module is internal and may change without notice (tests/core/test_public_api.py checks the plugins).
"""

from ._version import API_VERSION, __version__
from .errors import FacerecError
from .registry import components, create, describe, load

#: the public modules, imported on first use
MODULES = (
    "api",
    "data",
    "engine",
    "errors",
    "heads",
    "inference",
    "metrics",
    "nn",
    "outputs",
    "params",
    "protocols",
    "recipes",
    "registry",
    "reports",
    "testing",
    "weights",
)

__all__ = [
    "API_VERSION",
    "__version__",
    "FacerecError",
    "components",
    "create",
    "describe",
    "load",
    "load_weights",
    *MODULES,
]


def __getattr__(name: str):
    # Heavy parts (torch) load lazily so that listing plugins stays fast.
    if name == "load_weights":
        from .weights import load_weights

        return load_weights
    if name in MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'facerec' has no attribute {name!r}")
