"""MTCNN as a facerec :class:`~facerec.api.Detector` (core's built-in detector ``mtcnn``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...api import Detections, Detector
from ...errors import ParameterError
from ...params import check_device
from . import stages
from .nets import ONet, PNet, RNet
from .patches import Integrals

BORDERS = ("zero", "stretch")


class MTCNN(nn.Module, Detector):
    """MTCNN face detector (P-, R-, O-Net cascade) with 5 landmarks; weights of facenet-pytorch 2.6.0.

    ``min_size``: smallest face side searched, in pixels. ``thresholds``: P-, R- and O-Net score
    thresholds. ``factor``: pyramid scale step. Defaults are those of the MTCNN authors' demo and of
    facenet-pytorch: 20, (0.6, 0.7, 0.7), 0.709 (insightface aligned its data with 0.8 for O-Net).
    ``border``: how R-/O-Net see boxes that leave the image: ``zero`` pads with black as the
    original MTCNN does; ``stretch`` resizes only the part inside the image, as facenet-pytorch does
    (identical results for faces away from the border). Stretching distorts faces that fill the
    frame: on insightface's LFW chips the landmarks land 0.1 px (mean; 3.4 px rms) from the
    arcface112 template with ``zero``, 3 px lower (7 px rms) with ``stretch``.
    ``weights``: ``None`` (the installed facenet-pytorch package's files), the facenet-pytorch wheel,
    a folder with ``pnet.pt``/``rnet.pt``/``onet.pt``, a converted ``.safetensors``, the card
    ``mtcnn-facenet-pytorch``, or a state dict.
    """

    paper = (
        "K. Zhang, Z. Zhang, Z. Li, Y. Qiao: Joint Face Detection and Alignment Using Multitask "
        "Cascaded Convolutional Networks. IEEE Signal Processing Letters 23(10), 2016"
    )

    def __init__(
        self,
        min_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        border: str = "zero",
        weights: str | os.PathLike | Mapping[str, Tensor] | None = None,
        device: str = "cpu",
    ):
        super().__init__()
        if not min_size >= 12:
            raise ParameterError(f"min_size must be at least 12 px (P-Net's window), got {min_size}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t < 1.0 for t in thresholds):
            raise ParameterError(f"thresholds must be three numbers in [0, 1), got {thresholds}")
        if not 0.1 <= factor < 1.0:
            raise ParameterError(f"factor must be in [0.1, 1), got {factor}")
        if border not in BORDERS:
            raise ParameterError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
        check_device(device, "device")
        self.min_size, self.thresholds, self.factor, self.border = float(min_size), thresholds, float(factor), border
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.weights_source = self._load(weights)
        self.eval()
        # channels-last convolutions are 1.5-6x faster for these thin layers on CPU (measured)
        self.to(device=device)
        self.to(memory_format=torch.channels_last)

    def _load(self, weights: str | os.PathLike | Mapping[str, Any] | None) -> str:
        from ...weights import strict_load
        from .released import convert_released, load_state, looks_converted

        if isinstance(weights, Mapping):
            state = dict(weights) if looks_converted(weights) else convert_released(weights)
            where = "state dict"
        else:
            if weights is not None and not Path(weights).exists():
                from ...weights import resolve

                weights = resolve(weights)  # a card name: pulled and verified, or a clear error
            state, where = load_state(weights)
        strict_load(self, state, f"MTCNN weights ({where})")
        return where

    @property
    def device(self) -> torch.device:
        return self.pnet.score.weight.device

    def forward(self, images: Tensor | Sequence[Tensor]) -> list[Detections]:
        return self.detect(images)

    @torch.inference_mode()
    def detect_batch(self, images: Tensor) -> list[Detections]:
        """Same-sized images ``[B, 3, H, W]`` -> faces per image, by descending score."""
        b, _, h, w = images.shape
        pixels = images.to(self.device)
        pixels = pixels.float() if pixels.dtype == torch.uint8 else pixels.float() * 255.0
        t1, t2, t3 = self.thresholds
        cand = stages.propose(self.pnet, pixels, stages.pyramid(h, w, self.min_size, self.factor), t1)
        tables = Integrals(pixels)  # made per image when R-Net first needs it, reused by O-Net
        cand = stages.refine(self.rnet, tables, cand, t2, self.border)
        cand, points = stages.output(self.onet, tables, cand, t3, self.border)
        # Coordinates are reported as the released implementations report them, unshifted: on
        # insightface's LFW chips (aligned from such MTCNN points) the landmarks land 0.1 px (mean)
        # from the arcface112 template, so this is the frame that template lives in.
        return [Detections(cand.boxes[m], cand.scores[m], points[m]) for m in (cand.image == i for i in range(b))]

    def extra_repr(self) -> str:
        return (
            f"min_size={self.min_size:g}, thresholds={self.thresholds}, factor={self.factor}, "
            f"border={self.border!r}, weights={self.weights_source!r}"
        )
