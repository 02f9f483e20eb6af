"""Export a backbone to ONNX (``facerun export --format onnx``) and check the file with ONNX Runtime.

The exported graph maps network input (``InputSpec.prepare``-d images) to embeddings, or, with
``with_preprocessing``, canonical images (float RGB in [0, 1], NCHW, at the spec's canonical size)
to embeddings with the spec's resize/crop, colour and mean/std as its first nodes. The batch axis is
dynamic unless a fixed batch is asked for. Metadata (``facerec.*`` keys) records the backbone, its
parameters, input spec, preprocessing, embedding size and the SHA-256 of the weights, so that
:class:`facerec.onnx.embedder.OnnxEmbedder` can evaluate the file through any protocol.

Every export is checked before it is written: ONNX Runtime's output must be within ``tolerance``
(1e-4) of PyTorch's on the same random input, relative to ``max(1, max |output|)``, at batch 1, 7
and 32 (or at the fixed batch).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from ..errors import FacerecError

INSTALL_HINT = "pip install 'facerec-core[onnx]' (the onnx and onnxruntime packages)"
CHECK_BATCHES = (1, 7, 32)
TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}


class ExportError(FacerecError):
    """The model could not be exported, or ONNX Runtime does not reproduce it."""


def require(module: str) -> Any:
    """Import an optional ONNX package, or fail with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FacerecError(f"{module} is not installed; ONNX export and ONNX models need {INSTALL_HINT}") from None


class Exportable(nn.Module):
    """What is exported: ``backbone(x)`` on network input, or ``backbone.embed(images)`` (preprocessing folded)."""

    def __init__(self, backbone: nn.Module, with_preprocessing: bool):
        super().__init__()
        self.backbone, self.with_preprocessing = backbone, with_preprocessing

    def forward(self, x: Tensor) -> Tensor:
        out = self.backbone.embed(x) if self.with_preprocessing else self.backbone(x)
        if not isinstance(out, Tensor):
            raise ExportError(
                f"{type(self.backbone).__name__}.forward returns {type(out).__name__}, not one embedding tensor"
            )
        return out


def input_shape(backbone: Any, with_preprocessing: bool) -> tuple[int, int, int]:
    """``(C, H, W)`` of one exported input image."""
    spec = backbone.input_spec
    if with_preprocessing:
        side = int(spec.canonical_size)
        return (3, side, side)
    return (int(spec.channels), *map(int, spec.size))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@attrs.frozen
class ExportResult:
    """What ``export_onnx`` wrote and measured."""

    path: Path
    input_shape: tuple[int, int, int]
    batch: int | None  # None = dynamic
    opset: int
    exporter: str
    max_abs_diff: Mapping[int, float]  # batch size -> max |ONNX Runtime - PyTorch|
    output_scale: float
    metadata: Mapping[str, str]


def _export(module: nn.Module, sample: Tensor, path: Path, *, opset: int, dynamic: bool, exporter: str) -> None:
    if exporter == "torchscript":
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(
                module,
                (sample,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        return
    require("onnxscript")
    shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (sample,),
            dynamo=True,
            dynamic_shapes=shapes,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )
    if program is None:
        raise ExportError("the dynamo exporter produced no program")
    program.save(str(path))


def _session(path: Path, threads: int | None = None) -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(
    module: nn.Module,
    path: Path,
    shape: Sequence[int],
    batches: Sequence[int],
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> tuple[dict[int, float], float]:
    """Max |ONNX Runtime - PyTorch| per batch size on random inputs, and the output scale; raises
    :class:`ExportError` when a difference exceeds ``tolerance * max(1, max |output|)``."""
    session = _session(path)
    name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    diffs: dict[int, float] = {}
    scale = 1.0
    for b in batches:
        x = torch.rand((b, *shape), generator=gen)
        with torch.inference_mode():
            expected = module(x).float()
        got = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(
                f"ONNX Runtime gives shape {tuple(got.shape)} at batch {b}, PyTorch {tuple(expected.shape)}"
            )
        diffs[b] = float((got - expected).abs().max())
        scale = max(scale, float(expected.abs().max()))
    worst = max(diffs, key=diffs.__getitem__)
    if not all(d == d for d in diffs.values()) or diffs[worst] > tolerance * scale:
        raise ExportError(
            f"ONNX Runtime differs from PyTorch by {diffs[worst]:.3g} at batch {worst} "
            f"(allowed {tolerance:g} x output scale {scale:.3g})"
        )
    return diffs, scale


def _add_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    onnx = require("onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"facerec backbone {metadata.get('facerec.backbone', '?')}"
    onnx.save(model, str(path))


def export_onnx(
    backbone: nn.Module,
    out: str | os.PathLike,
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    opset: int | None = None,
    batch: int | None = None,
    with_preprocessing: bool = False,
    exporter: str = "torchscript",
    check: bool = True,
    tolerance: float = TOLERANCE,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``backbone`` (eval mode) to ``out``; ``batch=None`` keeps the batch axis dynamic.

    The file is written under a temporary name, given its metadata, checked with ONNX Runtime
    (unless ``check=False``) and only then renamed to ``out``.
    """
    from .. import __version__

    if exporter not in DEFAULT_OPSET:
        raise FacerecError(f"unknown exporter {exporter!r}; choose {' or '.join(DEFAULT_OPSET)}")
    if batch is not None and batch < 1:
        raise FacerecError(f"batch must be a positive size or dynamic, got {batch}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FacerecError(f"output {out} already exists (pass --overwrite)")
    if not out.parent.is_dir():
        raise FacerecError(f"output folder {out.parent} does not exist")
    require("onnx")
    if check:
        require("onnxruntime")
    opset = int(opset or DEFAULT_OPSET[exporter])
    model = copy.deepcopy(backbone).float().cpu().eval()
    module = Exportable(model, with_preprocessing).eval()
    shape = input_shape(model, with_preprocessing)
    sample = torch.rand((batch or 2, *shape), generator=torch.Generator().manual_seed(1))
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        try:
            with torch.no_grad():
                _export(module, sample, tmp, opset=opset, dynamic=batch is None, exporter=exporter)
        except (FacerecError, KeyboardInterrupt):
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"cannot export {name} to ONNX ({exporter}, opset {opset}): {type(exc).__name__}: {first[:300]}"
            ) from None
        spec = model.input_spec
        metadata = {
            "facerec.backbone": name,
            "facerec.backbone_params": json.dumps(dict(params or {}), sort_keys=True, default=str),
            "facerec.input_spec": json.dumps(attrs.asdict(spec), sort_keys=True),
            "facerec.preprocessing": "folded" if with_preprocessing else "none",
            "facerec.input": (
                f"canonical images: float32 RGB in [0, 1], NCHW, {shape[1]}x{shape[2]}"
                if with_preprocessing
                else f"network input (InputSpec.prepare applied): float32 NCHW, {shape[0]}x{shape[1]}x{shape[2]}"
            ),
            "facerec.embedding_size": str(int(model.embedding_size)),
            "facerec.batch": "dynamic" if batch is None else str(batch),
            "facerec.weights": Path(weights).name if weights else "",
            "facerec.weights_sha256": file_sha256(weights) if weights else "",
            "facerec.version": __version__,
        }
        diffs: dict[int, float] = {}
        scale = float("nan")
        if check:
            diffs, scale = check_onnx(module, tmp, shape, (batch,) if batch else CHECK_BATCHES, tolerance=tolerance)
            metadata["facerec.ort_max_abs_diff"] = json.dumps({str(b): d for b, d in diffs.items()})
        _add_metadata(tmp, metadata)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportResult(
        path=out,
        input_shape=shape,
        batch=batch,
        opset=opset,
        exporter=exporter,
        max_abs_diff=diffs,
        output_scale=scale,
        metadata=metadata,
    )
