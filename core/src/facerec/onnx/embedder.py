"""An ONNX model written by ``facerun export`` as a facerec embedder (``--backbone onnx:model.onnx``).

Protocols and ``facerun extract`` call it like a backbone: canonical images in, embeddings out. It
reads the input spec from the file's ``facerec.*`` metadata, applies ``InputSpec.prepare`` itself
when the preprocessing was not folded into the graph, and runs ONNX Runtime (CUDA when asked for
and available). A model exported with a fixed batch size is fed in chunks of that size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..api import InputSpec
from ..errors import DataError, FacerecError
from .export import require

PREFIX = "onnx:"


class OnnxEmbedder:
    """``embedder(images) -> embeddings`` through an ONNX Runtime session; has ``input_spec`` and
    ``embedding_size`` like a Backbone (``eval()``/``to()`` are accepted and change nothing)."""

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None):
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{self.path}: ONNX Runtime cannot load it: {first[:200]}") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if "facerec.input_spec" not in meta:
            raise DataError(
                f"{self.path} has no facerec metadata (facerec.input_spec); export it with "
                "`facerun export --format onnx`"
            )
        try:
            spec = json.loads(meta["facerec.input_spec"])
            self.input_spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
            self.embedding_size = int(meta["facerec.embedding_size"])
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{self.path}: unreadable facerec metadata ({type(exc).__name__}: {exc})") from None
        self.metadata = meta
        self.name = meta.get("facerec.backbone", self.path.stem)
        self.folded = meta.get("facerec.preprocessing") == "folded"
        batch = self.session.get_inputs()[0].shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None  # None: dynamic
        self.input_name = self.session.get_inputs()[0].name
        self.training = False

    # Backbone-like no-ops, so code written for modules accepts the embedder
    def eval(self) -> OnnxEmbedder:
        return self

    def to(self, *_: Any, **__: Any) -> OnnxEmbedder:
        return self

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def __call__(self, images: Tensor) -> Tensor:
        x = images if self.folded else self.input_spec.prepare(images)
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        if self.batch is None or len(arr) == self.batch:
            return torch.from_numpy(self._run(arr))
        outs = []
        for lo in range(0, len(arr), self.batch):  # a fixed-batch model: chunks, the last one padded
            part = arr[lo : lo + self.batch]
            pad = self.batch - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            outs.append(self._run(part)[: self.batch - pad])
        return torch.from_numpy(np.concatenate(outs))

    def __repr__(self) -> str:
        return f"OnnxEmbedder({str(self.path)!r}, {self.name}, batch={self.batch or 'dynamic'})"


def load_onnx_backbone(spec: str, weights: str | None, backbone_params: dict[str, Any], device: str) -> OnnxEmbedder:
    """``--backbone onnx:FILE`` for ``facerun eval`` / ``extract`` (the file holds its weights)."""
    if weights is not None:
        raise FacerecError("--weights goes with a backbone name; an ONNX model holds its own weights")
    if backbone_params:
        raise FacerecError(
            f"--param backbone.{next(iter(backbone_params))}: an ONNX model takes no backbone "
            "parameters (they were fixed at export)"
        )
    return OnnxEmbedder(spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec, device=device)
