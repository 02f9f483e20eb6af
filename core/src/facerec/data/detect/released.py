"""MTCNN's released weights: read, convert and describe them.

The weights are the three state dicts ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` that the
``facenet-pytorch`` 2.6.0 wheel (MIT) ships in ``facenet_pytorch/data/`` (converted there from the
Caffe models of the MTCNN authors). They are read with ``torch.load(weights_only=True)`` from

* the wheel itself (a zip), an extracted folder holding them (at any of ``./``, ``data/`` or
  ``facenet_pytorch/data/``),
* the installed package's data folder (``pip install --no-deps facenet-pytorch==2.6.0``), found with
  ``importlib.util.find_spec`` and never imported (the package pins an old torch),
* or a facerec ``.safetensors`` written by :func:`convert` (our layer names).

Conversion renames the layers and reorders two things so that our nets need no transposes: the
dense layers of R-Net and O-Net read a feature map the original flattens as (x, y, channel), and
O-Net's landmark head gives x1..x5 then y1..y5; ours flatten (channel, y, x) and give (x, y) pairs.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import WeightsError

NETS = ("pnet", "rnet", "onet")
WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_URL = (
    "https://files.pythonhosted.org/packages/ed/2e/"
    "2d56386bc2f834cdc683743903852cf1428b4e5ee119f16cf808b589d3cd/" + WHEEL
)
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
#: sha256 of the three files inside the 2.6.0 wheel (the same files ship in 2.5.x).
FILE_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
INSTALL_HINT = (
    f"install them with `pip install --no-deps facenet-pytorch==2.6.0`, or pass the wheel "
    f"({WHEEL}), a folder with pnet.pt/rnet.pt/onet.pt, or a converted .safetensors"
)

# original name -> ours; (conv, prelu) pairs map onto the Sequential trunk in order.
_KEYS = {
    "pnet": {
        "conv1": "trunk.0",
        "prelu1": "trunk.1",
        "conv2": "trunk.3",
        "prelu2": "trunk.4",
        "conv3": "trunk.5",
        "prelu3": "trunk.6",
        "conv4_1": "score",
        "conv4_2": "box",
    },
    "rnet": {
        "conv1": "trunk.0",
        "prelu1": "trunk.1",
        "conv2": "trunk.3",
        "prelu2": "trunk.4",
        "conv3": "trunk.6",
        "prelu3": "trunk.7",
        "dense4": "trunk.9",
        "prelu4": "trunk.10",
        "dense5_1": "score",
        "dense5_2": "box",
    },
    "onet": {
        "conv1": "trunk.0",
        "prelu1": "trunk.1",
        "conv2": "trunk.3",
        "prelu2": "trunk.4",
        "conv3": "trunk.6",
        "prelu3": "trunk.7",
        "conv4": "trunk.9",
        "prelu4": "trunk.10",
        "dense5": "trunk.12",
        "prelu5": "trunk.13",
        "dense6_1": "score",
        "dense6_2": "box",
        "dense6_3": "points",
    },
}
# the dense layer after the conv trunk: (name, channels, side of the square feature map)
_FLATTEN = {"rnet": ("dense4", 64, 3), "onet": ("dense5", 128, 3)}


def _load_pt(data: bytes, where: str) -> dict[str, Tensor]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{where}: not a readable torch state dict ({line})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{where}: expected a state dict of tensors, got {type(state).__name__}")
    return dict(state)


def _from_zip(path: Path) -> dict[str, dict[str, Tensor]]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            out = {}
            for net in NETS:
                member = next((n for n in names if n.endswith(f"data/{net}.pt") or n == f"{net}.pt"), None)
                if member is None:
                    raise WeightsError(
                        f"{path}: no {net}.pt inside (expected facenet_pytorch/data/{net}.pt of {WHEEL})"
                    )
                out[net] = _load_pt(z.read(member), f"{path}!{member}")
            return out
    except zipfile.BadZipFile:
        raise WeightsError(f"{path}: not a zip/wheel file") from None


def _folder_files(folder: Path) -> dict[str, Path] | None:
    for sub in (Path("."), Path("data"), Path("facenet_pytorch/data")):
        files = {net: folder / sub / f"{net}.pt" for net in NETS}
        if all(f.is_file() for f in files.values()):
            return files
    return None


def installed_folder() -> Path | None:
    """The data folder of an installed facenet-pytorch, located without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("facenet_pytorch")
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or ()) if spec is not None else ():
        if _folder_files(Path(base)) is not None:
            return Path(base) / "data"
    return None


def read_released(source: str | os.PathLike | None = None) -> dict[str, dict[str, Tensor]]:
    """The three original state dicts ``{"pnet": ..., "rnet": ..., "onet": ...}`` from a wheel, a
    folder, or (``source=None``) the installed facenet-pytorch package."""
    if source is None:
        folder = installed_folder()
        if folder is None:
            raise WeightsError(f"MTCNN weights not found: facenet-pytorch is not installed; {INSTALL_HINT}")
        source = folder
    path = Path(source)
    if path.is_dir():
        files = _folder_files(path)
        if files is None:
            raise WeightsError(
                f"{path}: no pnet.pt, rnet.pt and onet.pt in this folder (nor in data/ or "
                f"facenet_pytorch/data/ below it)"
            )
        return {net: _load_pt(f.read_bytes(), str(f)) for net, f in files.items()}
    if not path.is_file():
        raise WeightsError(f"MTCNN weights not found: {path}")
    if zipfile.is_zipfile(path) and path.suffix.lower() in (".whl", ".zip"):
        return _from_zip(path)
    raise WeightsError(
        f"{path}: MTCNN weights must be the {WHEEL} wheel, a folder holding "
        f"pnet.pt/rnet.pt/onet.pt, or a facerec .safetensors"
    )


def convert_released(states: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Original state dicts -> one state dict for :class:`facerec.data.detect.MTCNN` (``pnet.*``, ...)."""
    out: dict[str, Tensor] = {}
    for net in NETS:
        if net not in states:
            raise WeightsError(f"MTCNN weights: {net} is missing")
        state = dict(states[net])
        names = _KEYS[net]
        unexpected = sorted(k for k in state if k.split(".")[0] not in names)
        if unexpected:
            raise WeightsError(f"{net}.pt has unexpected keys {', '.join(unexpected[:4])}: not the MTCNN release")
        for key, value in state.items():
            layer, _, param = key.partition(".")
            value = value.detach().float()
            if net in _FLATTEN and layer == _FLATTEN[net][0] and param == "weight" and value.dim() == 2:
                _, c, s = _FLATTEN[net]
                # original input order (x, y, c) -> ours (c, y, x)
                if value.shape[1] != c * s * s:
                    raise WeightsError(f"{net}.{key} has shape {tuple(value.shape)}, expected [*, {c * s * s}]")
                value = value.reshape(-1, s, s, c).permute(0, 3, 2, 1).reshape(value.shape[0], -1)
            if net == "onet" and layer == "dense6_3":
                # x1..x5, y1..y5 -> x1, y1, ..., x5, y5
                value = value.reshape(2, 5, *value.shape[1:]).transpose(0, 1).reshape(value.shape)
            out[f"{net}.{names[layer]}.{param}"] = value.contiguous()
    return out


def looks_converted(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("pnet.trunk.") for k in state)


def load_state(source: str | os.PathLike | None = None) -> tuple[dict[str, Tensor], str]:
    """Our state dict from any supported source, and a description of where it came from."""
    if source is not None and str(source).lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"MTCNN weights not found: {path}")
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from None
        if not looks_converted(state):
            raise WeightsError(f"{path}: not MTCNN weights (no pnet.trunk.* tensors)")
        return state, str(path)
    where = str(source) if source is not None else str(installed_folder() or "facenet-pytorch")
    return convert_released(read_released(source)), where


def convert(source: str | os.PathLike | None, out: str | os.PathLike) -> dict[str, Any]:
    """Released weights (wheel, folder or installed package) -> one verified ``.safetensors``."""
    from ...weights import save_weights
    from .mtcnn import MTCNN

    out = Path(out)
    if not out.name.endswith(".safetensors"):
        raise WeightsError(f"output {out} must end in .safetensors")
    state, where = load_state(source)
    model = MTCNN(weights=state)
    meta = {
        "arch": "mtcnn",
        "kind": "detector",
        "source": where,
        "format": "facerec-safetensors-1",
        "origin": f"facenet-pytorch 2.6.0 ({WHEEL_SHA256[:16]}...)",
    }
    save_weights(model.state_dict(), out, meta)
    check = MTCNN(weights=out)
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), check.state_dict().values()))
    if not same:
        out.unlink()
        raise WeightsError(f"verification failed: {out} does not reload to the converted weights")
    return {
        "out": str(out),
        "tensors": len(state),
        "parameters": sum(v.numel() for v in state.values()),
        "source": where,
        "metadata": json.dumps(meta),
    }


def card():
    """MTCNN P/R/O-Net weights released with facenet-pytorch 2.6.0 (MIT), read from its wheel."""
    from ...weights import WeightCard, WeightFile

    return WeightCard(
        name="mtcnn-facenet-pytorch",
        arch="mtcnn",
        arch_kind="detector",
        format="original",
        files=[WeightFile(filename=WHEEL, sha256=WHEEL_SHA256, url=WHEEL_URL)],
        licence="MIT (facenet-pytorch); networks of Zhang et al. 2016",
        origin="timesler/facenet-pytorch 2.6.0 data/{pnet,rnet,onet}.pt, converted from davidsandberg/facenet's "
        "port of the MTCNN authors' Caffe models (kpzhang93/MTCNN_face_detection_alignment)",
    )
