"""Original checkpoints -> facerec safetensors (``facerun weights convert``), and models rebuilt from
a safetensors file's own metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from .formats import format_of
from .loading import _names, load_weights, read_metadata, save_weights, sha256


def build_model(arch: str, params: Mapping[str, Any] | None = None) -> tuple[nn.Module, str]:
    """Instantiate a registered backbone (or, failing that, generator) named ``arch``."""
    from ..errors import UnknownComponentError
    from ..registry import create

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
    from ..registry import create

    model = create(kind, meta["arch"], **params)
    return load_weights(model, path)


def convert(
    original: str | os.PathLike, arch: str, out: str | os.PathLike, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Original checkpoint -> safetensors through ``arch``'s converter, verified by a strict reload."""
    original, out = Path(original), Path(out)
    if not out.name.endswith(".safetensors"):
        raise WeightsError(f"output {out} must end in .safetensors")
    model, kind = build_model(arch, params)
    fmt = format_of(original)
    load_weights(model, original)
    meta = {
        "arch": arch,
        "kind": kind,
        "params": dict(params or {}),
        "source": original.name,
        "source_sha256": sha256(original),
        "source_format": fmt.name,
        "format": "facerec-safetensors-1",
    }
    save_weights(model, out, meta)
    check, _ = build_model(arch, params)
    load_weights(check, out)  # verify: the written file loads strictly into a fresh model
    ref, got = model.state_dict(), check.state_dict()
    diff = [k for k in ref if not torch.equal(ref[k], got[k])]
    if diff:
        out.unlink()
        raise WeightsError(f"verification failed: {out} differs from the converted model at {_names(diff)}")
    return {
        "out": str(out),
        "arch": arch,
        "kind": kind,
        "source_format": fmt.name,
        "tensors": len(ref),
        "parameters": sum(v.numel() for v in ref.values()),
        "sha256": sha256(out),
    }
