"""Weight-file formats, a component kind (group ``facerec.weight_formats``): core's readers and plugins'
register the same way; :func:`format_of` picks the one that reads a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ..errors import FacerecError, WeightsError
from .readers import (
    _read_npz,
    _read_pickle_file,
    _read_safetensors,
    _read_torch,
    _sniff_npz,
    _sniff_safetensors,
    _sniff_torch,
)


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


# core's built-in formats, registered in core/pyproject.toml like any plugin's
SAFETENSORS = WeightFormat(
    "safetensors",
    _read_safetensors,
    (".safetensors",),
    _sniff_safetensors,
    native=True,
    origin="Hugging Face safetensors (facerec's own checkpoints and converted weights)",
)
PICKLE = WeightFormat(
    "pickle",
    _read_pickle_file,
    (".pkl", ".pickle"),
    origin="legacy pickles of numpy arrays (VGGFace2 *_weight.pkl), restricted unpickler",
)
NPZ = WeightFormat("npz", _read_npz, (".npz",), _sniff_npz, origin="numpy .npz archives of arrays (no pickles)")
TORCH = WeightFormat(
    "torch",
    _read_torch,
    (".pth", ".pt", ".tar", ".ckpt", ".bin"),
    _sniff_torch,
    origin="torch.save files (zip or legacy pickle), read with weights_only=True",
)


def weight_formats() -> tuple[list[WeightFormat], list[tuple[str, str]]]:
    """Every registered weight format, and (name, error) for those that fail to load."""
    from ..registry import components, load

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
    ranked = sorted(
        (
            (0 if f.by_content(head) and f.by_name(path) else 1 if f.by_content(head) else 2, f.name, f)
            for f in formats
            if f.by_content(head) or f.by_name(path)
        ),
        key=lambda t: t[:2],
    )
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
