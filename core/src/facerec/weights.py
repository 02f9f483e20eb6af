"""Pretrained weights: cards, safe readers, strict loading, safetensors export, Hugging Face pull.

* A :class:`WeightCard` describes one set of weights (architecture, files with sha256, licence,
  input spec, published metrics, origin). Plugins register cards through the ``facerec.weights``
  entry-point group (the target is a card, or a function returning one).
* A :class:`WeightFormat` reads one kind of weight file. Formats are components of kind
  ``weight-format`` (group ``facerec.weight_formats``): core registers safetensors, torch
  (``torch.load(weights_only=True)``), pickle (a restricted unpickler for VGGFace2-style latin-1
  ``.pkl`` files that admits numpy arrays and plain containers only) and npz; a plugin registers a
  reader for its own (dlib's ``.dat``), and :func:`load_weights`, ``--weights`` and ``facerun weights
  convert`` use it. No file can execute code.
* :func:`load_weights` loads safetensors strictly, or reads a paper's original file through its
  format and converts it with ``type(model).convert_checkpoint`` before the strict load.
* :func:`pull` fetches a card's files through ``huggingface_hub`` (standard cache, honours
  ``HF_HUB_OFFLINE``) and verifies their sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .api import InputSpec
from .errors import FacerecError, WeightsError

FORMATS = ("safetensors", "original")


@attrs.frozen
class WeightFile:
    """One file of a card: where to get it and its sha256 (hex).

    A file comes from the Hugging Face Hub (``hf_repo``), a ``url``, or an installed Python package:
    ``package="import_name:path/inside/the/package"``, found without importing the package;
    ``pip`` is the requirement that installs it (default: the import name), named when it is missing.
    """

    filename: str
    sha256: str = ""
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None  # path inside the repo; defaults to ``filename``
    revision: str | None = None
    package: str | None = attrs.field(default=None)
    pip: str | None = None

    @package.validator
    def _check_package(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            top, sep, rel = value.partition(":")
            if not (sep and top and rel) or "." in top:
                raise WeightsError(f"WeightFile package must be 'import_name:path/in/package' (a top-level "
                                   f"package), got {value!r}")

    @property
    def where(self) -> str:
        """Where the file comes from, as ``facerun weights list`` shows it."""
        if self.package:
            return f"python package {self.pip or self.package.partition(':')[0]} ({self.package})"
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.hf_filename or self.filename}"
        return self.url or "?"


def _files(value: Any) -> tuple[WeightFile, ...]:
    return tuple(f if isinstance(f, WeightFile) else WeightFile(**f) for f in value)


@attrs.frozen
class WeightCard:
    """A registered set of pretrained weights and what is known about them."""

    name: str
    arch: str  # registered backbone or generator name
    files: tuple[WeightFile, ...] = attrs.field(converter=_files)
    licence: str = "unknown"
    input_spec: InputSpec | None = None
    metrics: Mapping[str, float] = attrs.field(factory=dict)  # published numbers, e.g. {"LFW": 99.8}
    origin: str = ""  # paper / repository / release the weights come from
    format: str = attrs.field(default="safetensors", validator=attrs.validators.in_(FORMATS))
    params: Mapping[str, Any] = attrs.field(factory=dict)  # constructor parameters of ``arch``
    arch_kind: str = "backbone"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# ------------------------------------------------------------------------------------------------
# registry


def card(name: str) -> WeightCard:
    """The registered card ``name`` (a factory target is called)."""
    from .registry import load

    obj = load("weights", name)
    if callable(obj) and not isinstance(obj, WeightCard):
        obj = obj()
    if not isinstance(obj, WeightCard):
        raise WeightsError(f"weights {name!r} is registered as {type(obj).__name__}, not a WeightCard")
    return obj


def cards() -> tuple[list[WeightCard], list[tuple[str, str]]]:
    """All registered cards, and (name, error) for those that fail to load."""
    from .registry import components

    good, bad = [], []
    for comp in components("weights"):
        try:
            good.append(card(comp.qualified))
        except FacerecError as exc:
            bad.append((comp.name, str(exc)))
    return good, bad


# ------------------------------------------------------------------------------------------------
# safe readers

#: Globals a legacy pickle may reference: numpy array reconstruction and plain containers only.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"), ("_codecs", "encode"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
}


class _Refused(WeightsError):
    """The restricted unpickler met a global it does not admit."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"refused by the safe loader: it references {module}.{name}, which is not a numpy array "
                       f"or plain container (nothing in it was run)")


def read_pickle(path: str | os.PathLike) -> Any:
    """A legacy pickle of numpy arrays (VGGFace2 ``*_weight.pkl``, latin-1), never executing code."""
    from . import filekind

    path = Path(path)
    named = filekind.read_failure(path, None, "a pickle",  # safetensors under a .pkl name, empty
                                  safetensors_hint="give it a .safetensors name to load it as one")
    if named is not None and path.is_file():
        raise WeightsError(named)
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except _Refused as exc:
        raise _Refused(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise WeightsError(filekind.read_failure(path, exc, "a pickle")
                           or f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


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


# ------------------------------------------------------------------------------------------------
# weight-file formats (a component kind: core's readers and plugins' register the same way)


@attrs.frozen
class WeightFormat:
    """A reader for one kind of weight file, registered in the ``facerec.weight_formats`` group.

    ``read(path)`` returns the file's checkpoint: what the architecture's ``convert_checkpoint``
    takes (for most formats a mapping of names to tensors); a bad file raises :class:`WeightsError`
    with one line. A file is this format's when its name ends in one of ``suffixes`` or ``sniff``
    says yes to its first 512 bytes; a content match wins over a name match. ``native`` formats hold
    facerec's own state dicts (loaded without conversion). ``origin`` says whose format it is.
    """

    name: str
    read: Callable[[Path], Any] = attrs.field(eq=False)
    suffixes: tuple[str, ...] = attrs.field(default=(), converter=lambda v: tuple(s.lower() for s in v))
    sniff: Callable[[bytes], bool] | None = attrs.field(default=None, eq=False)
    native: bool = False
    origin: str = ""

    def by_name(self, path: Path) -> bool:
        return path.name.lower().endswith(self.suffixes) if self.suffixes else False

    def by_content(self, head: bytes) -> bool:
        try:
            return bool(self.sniff(head)) if self.sniff is not None else False
        except Exception:  # a sniffer must never break reading other formats
            return False


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    from . import filekind

    try:
        return load_file(str(path))
    except Exception as exc:
        raise WeightsError(filekind.read_failure(path, exc, "safetensors")
                           or f"{path}: not a valid safetensors file ({exc})") from None


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
        from . import filekind

        raise WeightsError(filekind.read_failure(path, exc, "an .npz archive")
                           or f"{path}: not a valid .npz ({exc})") from None


def _read_torch(path: Path) -> Any:
    from . import filekind

    named = filekind.read_failure(path, None, "a pickled checkpoint",  # safetensors renamed, empty, cut short
                                  safetensors_hint="give it a .safetensors name to load it as one")
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
        raise WeightsError(filekind.read_failure(path, exc, "a pickled checkpoint")
                           or f"{path}: not a readable checkpoint ({reason})") from None
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(filekind.read_failure(path, exc, "a pickled checkpoint")
                           or f"{path}: not a readable checkpoint ({type(exc).__name__}: {first})") from None


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


# core's built-in formats, registered in core/pyproject.toml like any plugin's
SAFETENSORS = WeightFormat("safetensors", _read_safetensors, (".safetensors",), _sniff_safetensors, native=True,
                           origin="Hugging Face safetensors (facerec's own checkpoints and converted weights)")
PICKLE = WeightFormat("pickle", _read_pickle_file, (".pkl", ".pickle"),
                      origin="legacy pickles of numpy arrays (VGGFace2 *_weight.pkl), restricted unpickler")
NPZ = WeightFormat("npz", _read_npz, (".npz",), _sniff_npz, origin="numpy .npz archives of arrays (no pickles)")
TORCH = WeightFormat("torch", _read_torch, (".pth", ".pt", ".tar", ".ckpt", ".bin"), _sniff_torch,
                     origin="torch.save files (zip or legacy pickle), read with weights_only=True")


def weight_formats() -> tuple[list[WeightFormat], list[tuple[str, str]]]:
    """Every registered weight format, and (name, error) for those that fail to load."""
    from .registry import components, load

    good, bad = [], []
    for comp in components("weight-format"):
        try:
            obj = load("weight-format", comp.qualified)
        except FacerecError as exc:
            bad.append((comp.name, str(exc)))
            continue
        if not isinstance(obj, WeightFormat):
            bad.append((comp.name, f"registered as {type(obj).__name__}, not a WeightFormat"))
            continue
        good.append(obj)
    return good, bad


def format_of(path: str | os.PathLike) -> WeightFormat:
    """The registered format that reads ``path``: content match with a name match first, then a
    content match, then a name match, else torch's reader (it reads any torch.save file)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    with path.open("rb") as f:
        head = f.read(512)
    formats, broken = weight_formats()
    ranked = sorted(((0 if f.by_content(head) and f.by_name(path) else 1 if f.by_content(head) else 2, f.name, f)
                     for f in formats if f.by_content(head) or f.by_name(path)), key=lambda t: t[:2])
    if ranked:
        return ranked[0][2]
    fallback = next((f for f in formats if f.name == "torch"), TORCH)
    if broken:  # a plugin's reader that could not load may be the one this file needed: say so
        names = ", ".join(f"{n} ({e})" for n, e in broken)
        return attrs.evolve(fallback, read=lambda p: _read_with_note(fallback, p, names))
    return fallback


def _read_with_note(fmt: WeightFormat, path: Path, broken: str) -> Any:
    try:
        return fmt.read(path)
    except WeightsError as exc:
        raise WeightsError(f"{exc}; weight formats that failed to load: {broken}") from None


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read any weight file safely through its registered format (see :func:`format_of`): core reads
    safetensors, torch (.pth/.pt/.tar/.ckpt/.bin), .pkl and .npz; plugins add theirs."""
    path = Path(path)
    return format_of(path).read(path)


# ------------------------------------------------------------------------------------------------
# strict loading


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... (+{len(keys) - limit} more)" if len(keys) > limit else shown


def strict_load(model: nn.Module, state: Mapping[str, Any], source: str = "state dict") -> None:
    """``load_state_dict(strict=True)`` with a one-line WeightsError listing every kind of mismatch."""
    own = model.state_dict()
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected a state dict, got {type(state).__name__}")
    state = {k: (v if isinstance(v, Tensor) else torch.as_tensor(v)) for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_names(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch for {len(shapes)}: {_names(shapes, 3)}")
        raise WeightsError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {str(exc).splitlines()[0]}") from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights into ``model`` strictly: safetensors directly, any other file converted.

    Other files are read safely (see :func:`read_checkpoint`) and passed through
    ``type(model).convert_checkpoint`` (plugins override it for the papers' layouts).
    """
    path = Path(path)
    fmt = format_of(path)
    state = fmt.read(path)
    if not fmt.native:
        from .api import unwrap_state_dict

        convert: Callable[[Any], Any] = getattr(type(model), "convert_checkpoint", None) or unwrap_state_dict
        try:
            state = convert(state)
        except FacerecError:
            raise
        except Exception as exc:
            raise WeightsError(f"{path}: {type(model).__name__}.convert_checkpoint failed: "
                               f"{type(exc).__name__}: {exc}") from None
    strict_load(model, state, str(path))
    return model


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (``arch``, ``params``, ...)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from None


def save_weights(model: nn.Module | Mapping[str, Tensor], path: str | os.PathLike,
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a state dict as safetensors atomically; metadata values are stored as strings (JSON for non-str)."""
    from .fileio import save_safetensors_atomic

    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    # safetensors refuses shared storage: give every tensor its own contiguous copy
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {str(k): (v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in (metadata or {}).items()}
    return save_safetensors_atomic(state, path, meta)


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# convert and pull


def build_model(arch: str, params: Mapping[str, Any] | None = None) -> tuple[nn.Module, str]:
    """Instantiate a registered backbone (or, failing that, generator) named ``arch``."""
    from .errors import UnknownComponentError
    from .registry import create

    try:
        return create("backbone", arch, **dict(params or {})), "backbone"
    except UnknownComponentError as exc:
        try:
            return create("generator", arch, **dict(params or {})), "generator"
        except UnknownComponentError:
            raise exc from None


def model_from_weights(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model a facerec safetensors file describes (``arch``/``kind``/``params`` metadata,
    as :func:`convert` and :func:`save_weights` callers write it) and load it strictly."""
    meta = read_metadata(path)
    if "arch" not in meta:
        raise WeightsError(f"{path}: no 'arch' in the safetensors metadata; name the architecture explicitly")
    try:
        params = json.loads(meta.get("params", "{}"))
    except ValueError:
        raise WeightsError(f"{path}: metadata 'params' is not JSON: {meta['params'][:60]!r}") from None
    kind = meta.get("kind", "backbone")
    if kind not in ("backbone", "generator"):
        raise WeightsError(f"{path}: metadata kind {kind!r} is neither backbone nor generator")
    from .registry import create

    model = create(kind, meta["arch"], **params)
    return load_weights(model, path)


def convert(original: str | os.PathLike, arch: str, out: str | os.PathLike,
            params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Original checkpoint -> safetensors through ``arch``'s converter, verified by a strict reload."""
    original, out = Path(original), Path(out)
    if not out.name.endswith(".safetensors"):
        raise WeightsError(f"output {out} must end in .safetensors")
    model, kind = build_model(arch, params)
    fmt = format_of(original)
    load_weights(model, original)
    meta = {"arch": arch, "kind": kind, "params": dict(params or {}), "source": original.name,
            "source_sha256": sha256(original), "source_format": fmt.name, "format": "facerec-safetensors-1"}
    save_weights(model, out, meta)
    check, _ = build_model(arch, params)
    load_weights(check, out)  # verify: the written file loads strictly into a fresh model
    ref, got = model.state_dict(), check.state_dict()
    diff = [k for k in ref if not torch.equal(ref[k], got[k])]
    if diff:
        out.unlink()
        raise WeightsError(f"verification failed: {out} differs from the converted model at {_names(diff)}")
    return {"out": str(out), "arch": arch, "kind": kind, "source_format": fmt.name, "tensors": len(ref),
            "parameters": sum(v.numel() for v in ref.values()), "sha256": sha256(out)}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def pull(name: str, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Fetch every file of card ``name`` into the Hugging Face cache (or find it in its installed
    Python package) and verify its sha256."""
    c = card(name)
    paths = []
    for f in c.files:
        if f.package:
            paths.append(package_file(c, f))
        elif f.hf_repo:
            paths.append(_pull_hf(c, f, f.hf_repo, cache_dir))
        elif f.url:
            paths.append(_pull_url(c, f, f.url, cache_dir))
        else:
            raise WeightsError(f"weights {c.name!r}: file {f.filename} has neither a package, an hf repo nor a url")
        if f.sha256 and (got := sha256(paths[-1])) != f.sha256.lower():
            fix = (f"reinstall it: pip install --force-reinstall {f.pip or f.package.partition(':')[0]}" if f.package
                   else "corrupt or tampered download; delete it and pull again")
            raise WeightsError(f"weights {c.name!r}: {paths[-1]} has sha256 {got[:16]}..., "
                               f"expected {f.sha256[:16]}... ({fix})")
    return paths


def resolve(weights: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A ``--weights`` value as users give it: an existing file, or a registered card name whose
    (first) file is found (installed package) or pulled into the Hub cache, and verified. Unknown
    names fail with one line pointing at the card list."""
    return resolve_weights(weights, cache_dir).path


@attrs.frozen
class ResolvedWeights:
    """What a ``--weights`` value turned out to be: the file, its sha256, and the card if it named one."""

    path: Path
    sha256: str
    card: WeightCard | None = None

    def record(self) -> dict[str, str]:
        """The provenance a report or feature file keeps."""
        out = {"weights_file": str(self.path.resolve()), "weights_sha256": self.sha256}
        if self.card is not None:
            out["weights_card"] = self.card.name
        return out


def resolve_weights(weights: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """:func:`resolve`, keeping the card and the file's sha256 (verified against the card's)."""
    path = Path(weights)
    if path.is_file():
        return ResolvedWeights(path, sha256(path))
    from .registry import components

    names = {c.name for c in components("weights")} | {c.qualified for c in components("weights")}
    if str(weights) not in names:
        hint = "no such file" if any(ch in str(weights) for ch in "/\\.") else "not a registered card either"
        raise WeightsError(f"--weights {str(weights)!r}: neither a file nor a registered card ({hint}; "
                           f"`facerun weights list` shows the cards)")
    c = card(str(weights))
    path = pull(str(weights), cache_dir)[0]
    return ResolvedWeights(path, c.files[0].sha256.lower() if c.files[0].sha256 else sha256(path), c)


def _spec_mismatch(card_spec: InputSpec, model_spec: InputSpec) -> str:
    """The fields where the card's input spec and the model's differ, as ``field card X vs model Y``."""
    a, b = attrs.asdict(card_spec), attrs.asdict(model_spec)
    return "; ".join(f"{k} card {a[k]!r} vs model {b[k]!r}" for k in a if a[k] != b[k])


def card_params(kind: str, name: str, weights: str | os.PathLike,
                params: Mapping[str, Any] | None = None) -> tuple[WeightCard | None, dict[str, Any]]:
    """When ``weights`` names a registered card (not a file): check it is for ``kind`` ``name`` and return it
    with its constructor parameters merged with ``params`` (which may add to them, never contradict them).
    Nothing is fetched. For a file: ``(None, params)``."""
    from .errors import ParameterError
    from .registry import components

    given = dict(params or {})
    names = {x.name for x in components("weights")} | {x.qualified for x in components("weights")}
    c = card(str(weights)) if not Path(weights).is_file() and str(weights) in names else None
    if c is not None:
        if c.arch != name.rpartition(":")[2] or c.arch_kind != kind:
            raise WeightsError(f"weights {c.name!r} are for {c.arch_kind} {c.arch!r}, not {kind} {name!r}")
        clash = next((k for k in given if k in c.params and given[k] != c.params[k]), None)
        if clash is not None:
            raise ParameterError(f"{kind} {name!r}: parameter {clash}={given[clash]!r} contradicts weights "
                                 f"{c.name!r}, built with {clash}={c.params[clash]!r}")
        given = {**c.params, **given}
    return c, given


def create_with_weights(kind: str, name: str, weights: str | os.PathLike,
                        params: Mapping[str, Any] | None = None,
                        cache_dir: str | os.PathLike | None = None) -> tuple[nn.Module, ResolvedWeights]:
    """Build component ``name`` of ``kind`` and load ``weights`` (a file or a card name) strictly, in one step.

    A card must be for ``name`` and ``kind``; its ``params`` are the constructor's parameters, and an
    explicit parameter may add to them but not contradict them (the weights only fit the card's); its
    ``input_spec`` must equal the built model's. A file loads as ``--weights FILE`` does. Returns the
    model and what the weights resolved to (the provenance reports keep)."""
    from .registry import create

    c, given = card_params(kind, name, weights, params)
    resolved = resolve_weights(weights, cache_dir) if c is None else None  # a file (or a clear error) first
    model = create(kind, name, **given)
    spec = getattr(model, "input_spec", None)
    if c is not None and c.input_spec is not None and spec is not None and spec != c.input_spec:
        raise WeightsError(f"weights {c.name!r}: the card's input spec does not match {kind} {name!r}: "
                           f"{_spec_mismatch(c.input_spec, spec)}")
    resolved = resolved or resolve_weights(weights, cache_dir)  # a card's file is fetched once all fits
    load_weights(model, resolved.path)
    return model, resolved


def package_file(c: WeightCard, f: WeightFile) -> Path:
    """The card's file inside an installed Python package (found without importing the package)."""
    import importlib.util

    assert f.package is not None
    top, _, rel = f.package.partition(":")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    install = f"pip install {f.pip or top}"
    if spec is None:
        raise WeightsError(f"weights {c.name!r}: {f.filename} comes with the Python package {top!r}, which is not "
                           f"installed: {install}")
    bases = list(spec.submodule_search_locations or ()) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    for base in bases:
        path = Path(base, *rel.split("/"))
        if path.is_file():
            return path
    raise WeightsError(f"weights {c.name!r}: the installed package {top!r} has no {rel} (an incomplete "
                       f"install?): pip install --force-reinstall {f.pip or top}")


def _pull_hf(c: WeightCard, f: WeightFile, repo: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=f.hf_filename or f.filename,
                                    revision=f.revision, cache_dir=None if cache_dir is None else str(cache_dir)))
    except Exception as exc:  # LocalEntryNotFoundError, HTTP errors, ...
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (HF_HUB_OFFLINE is set and the file is not in the local cache)" if _offline() else ""
        raise WeightsError(f"weights {c.name!r}: cannot get {f.hf_repo}/{f.hf_filename or f.filename}{hint}: "
                           f"{type(exc).__name__}: {why}") from None


def _pull_url(c: WeightCard, f: WeightFile, url: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    root = Path(cache_dir) if cache_dir is not None else Path(HF_HUB_CACHE).parent / "facerec"
    target = root / c.name / f.filename
    if target.is_file():
        return target
    if _offline():
        raise WeightsError(f"weights {c.name!r}: {target} is not cached and HF_HUB_OFFLINE is set")
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as out:  # noqa: S310 (card URL)
            while block := r.read(1 << 20):
                out.write(block)
        os.replace(tmp, target)
    except OSError as exc:
        raise WeightsError(f"weights {c.name!r}: download of {f.url} failed: {exc}") from None
    return target


__all__ = ["WeightCard", "WeightFile", "WeightFormat", "ResolvedWeights", "card", "cards", "read_checkpoint",
           "read_pickle", "load_weights", "strict_load", "save_weights", "read_metadata", "convert", "pull", "resolve",
           "resolve_weights", "package_file", "weight_formats", "format_of", "sha256", "build_model",
           "model_from_weights", "card_params", "create_with_weights"]
