"""Safe readers of weight files: none executes code. safetensors, torch (``weights_only=True``), npz
(no pickles) and a restricted unpickler for legacy pickles of numpy arrays (VGGFace2's latin-1 ``.pkl``)."""

from __future__ import annotations

import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import WeightsError

#: What a pickle of numpy arrays needs: array and scalar reconstruction, and bytes as protocol 2 spells them.
NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)
#: Globals a legacy weight pickle may reference: numpy arrays and plain containers only.
_SAFE_GLOBALS = NUMPY_GLOBALS | {
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}


class _Refused(WeightsError):
    """The restricted unpickler met a global it does not admit."""


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed``; any other raises ``refuse(module, name)``, so loading can
    never run code."""

    def __init__(
        self, file: Any, allowed: frozenset[tuple[str, str]], refuse: Callable[[str, str], Exception], **kw: Any
    ):
        super().__init__(file, **kw)
        self.allowed, self.refuse = allowed, refuse

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise self.refuse(module, name)


def _refuse_weights(module: str, name: str) -> Exception:
    return _Refused(
        f"refused by the safe loader: it references {module}.{name}, which is not a numpy array "
        f"or plain container (nothing in it was run)"
    )


def read_pickle(path: str | os.PathLike) -> Any:
    """A legacy pickle of numpy arrays (VGGFace2 ``*_weight.pkl``, latin-1), never executing code."""
    from .. import filekind

    path = Path(path)
    named = filekind.read_failure(
        path,
        None,
        "a pickle",  # safetensors under a .pkl name, empty
        safetensors_hint="give it a .safetensors name to load it as one",
    )
    if named is not None and path.is_file():
        raise WeightsError(named)
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, _SAFE_GLOBALS, _refuse_weights, encoding="latin1").load()
    except _Refused as exc:
        raise _Refused(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise WeightsError(
            filekind.read_failure(path, exc, "a pickle")
            or f"{path}: not a readable pickle ({type(exc).__name__}: {exc})"
        ) from None


def _to_tensors(obj: Any) -> Any:
    """numpy arrays (from .pkl) -> tensors, recursively through dicts/lists."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        native = obj.astype(obj.dtype.newbyteorder("="), copy=True)  # a copy in native byte order, 0-d kept
        return torch.from_numpy(native)
    if isinstance(obj, Mapping):
        return OrderedDict((k, _to_tensors(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_tensors(v) for v in obj)
    return obj


def _torch_reason(message: str) -> str:
    """The informative line of torch's weights_only error (skipping its generic advice)."""
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(boiler):
            return line
    return "unsupported content"


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    from .. import filekind

    try:
        return load_file(str(path))
    except Exception as exc:
        raise WeightsError(
            filekind.read_failure(path, exc, "safetensors") or f"{path}: not a valid safetensors file ({exc})"
        ) from None


def _sniff_safetensors(head: bytes) -> bool:
    return len(head) > 9 and int.from_bytes(head[:8], "little") < (1 << 30) and head[8:9] == b"{"


def _read_pickle_file(path: Path) -> Any:
    return _to_tensors(read_pickle(path))


def _read_npz(path: Path) -> dict[str, Tensor]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: torch.from_numpy(z[k].copy()) for k in z.files}
    except Exception as exc:
        from .. import filekind

        raise WeightsError(
            filekind.read_failure(path, exc, "an .npz archive") or f"{path}: not a valid .npz ({exc})"
        ) from None


def _read_torch(path: Path) -> Any:
    from .. import filekind

    named = filekind.read_failure(
        path,
        None,
        "a pickled checkpoint",  # safetensors renamed, empty, cut short
        safetensors_hint="give it a .safetensors name to load it as one",
    )
    if named is not None:
        raise WeightsError(named)
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols would break the one-line error
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _torch_reason(str(exc))
        if filekind.kind(path) == "pickle":
            # a bare pickle (neither a torch zip nor legacy torch.save): the restricted numpy reader may
            # read it; it refuses anything else by name
            try:
                obj = read_pickle(path)
            except _Refused as refused:
                raise WeightsError(str(refused)) from None
            except WeightsError:
                obj = None
            if isinstance(obj, Mapping):
                return _to_tensors(obj)
        raise WeightsError(
            filekind.read_failure(path, exc, "a pickled checkpoint") or f"{path}: not a readable checkpoint ({reason})"
        ) from None
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(
            filekind.read_failure(path, exc, "a pickled checkpoint")
            or f"{path}: not a readable checkpoint ({type(exc).__name__}: {first})"
        ) from None


def _zip_first_name(head: bytes) -> bytes:
    """The first member's name of a zip file, from its local header (b"" when not a zip)."""
    if not head.startswith(b"PK\x03\x04") or len(head) < 30:
        return b""
    n = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + n]


#: What legacy (non-zip) torch.save files start with: a pickled magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _sniff_torch(head: bytes) -> bool:
    return _zip_first_name(head).endswith(b"/data.pkl") or head.startswith(_TORCH_LEGACY_MAGIC)


def _sniff_npz(head: bytes) -> bool:
    return _zip_first_name(head).endswith(b".npy")
