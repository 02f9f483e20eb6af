"""LightCNN-29 v2 and LightCNN-9 (Wu et al.), as used by DVG / DVG-Face, written from the spec.

Max-feature-map (MFM): a conv/linear producing 2C outputs whose FIRST half is compared elementwise
with the SECOND half (not interleaved pairs). Downsampling in LightCNN-29 v2 is the SUM of a 2x2
max-pool and a 2x2 average-pool. Key names follow the original state dict (``conv1.filter.weight``
...), so released checkpoints load after stripping ``module.``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from facerec.api import Backbone, InputSpec, unwrap_state_dict
from facerec.errors import WeightsError
from torch import Tensor, nn

#: Keys of the original classifiers, which belong to a head and not to the backbone.
CLASSIFIER_KEYS = ("fc2.weight", "fc2.bias", "fc2_.weight", "fc2_.bias")

PAPER_29 = (
    "Wu, He, Sun, Tan: A Light CNN for Deep Face Representation with Noisy Labels, TIFS 2018; "
    "as used by Fu et al., DVG-Face, TPAMI 2021"
)


class MFM(nn.Module):
    """Conv (or linear) to 2*out channels, then max(first half, second half).

    ``batchnorm`` adds a BatchNorm before the max (not in the released nets, whose keys stay as they are):
    from scratch at quick-preset sizes the BN-free net maps every face to nearly the same embedding
    (cosine ~0.99 between faces at init) and cross-entropy stays at ln(classes) for hundreds of steps.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        linear: bool = False,
        batchnorm: bool = False,
    ):
        super().__init__()
        self.out_channels = cout
        self.filter = nn.Linear(cin, 2 * cout) if linear else nn.Conv2d(cin, 2 * cout, kernel_size, stride, padding)
        self.bn = (nn.BatchNorm1d(2 * cout) if linear else nn.BatchNorm2d(2 * cout)) if batchnorm else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.filter(x)
        if self.bn is not None:
            y = self.bn(y)
        a, b = y.split(self.out_channels, dim=1)
        return torch.maximum(a, b)


class Group(nn.Module):
    """mfm 1x1 (C -> C) then mfm kxk (C -> C_out)."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1, batchnorm: bool = False
    ):
        super().__init__()
        self.conv_a = MFM(cin, cin, 1, 1, 0, batchnorm=batchnorm)
        self.conv = MFM(cin, cout, kernel_size, stride, padding, batchnorm=batchnorm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.conv_a(x))


class ResBlock(nn.Module):
    """mfm 3x3 -> mfm 3x3 -> + input (no activation after the add)."""

    def __init__(self, channels: int, batchnorm: bool = False):
        super().__init__()
        self.conv1 = MFM(channels, channels, batchnorm=batchnorm)
        self.conv2 = MFM(channels, channels, batchnorm=batchnorm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


def _pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


def _gray_spec(image_size: int) -> InputSpec:
    # Released weights: gray faces aligned to 144x144, centre crop 128 at test time.
    return InputSpec(size=image_size, color="GRAY", resize=round(image_size * 144 / 128), template="lightcnn144")


def _check_size(image_size: int, multiple: int) -> None:
    if image_size <= 0 or image_size % multiple:
        raise ValueError(f"image_size must be a positive multiple of {multiple}, got {image_size}")


def _channels(base: tuple[int, ...], width: float) -> tuple[int, ...]:
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(2, round(c * width)) for c in base)


def convert_lightcnn_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """Released / DVG-Face LightCNN checkpoint -> backbone state dict.

    Takes ``checkpoint['state_dict']`` (or a bare state dict), strips ``module.`` and drops the
    classifier (upstream ``fc2`` with 80013 or 79077 classes, DVG's ``fc2_``), reporting what it dropped;
    the head loads it separately (:class:`LightCNNClassifier`).
    """
    try:
        state = unwrap_state_dict(checkpoint)
    except TypeError as exc:
        raise WeightsError(f"LightCNN checkpoint: {exc}") from None
    dropped = {k: tuple(state.pop(k).shape) for k in CLASSIFIER_KEYS if k in state}
    if dropped:
        desc = ", ".join(f"{k} {list(s)}" for k, s in dropped.items())
        warnings.warn(
            f"LightCNN checkpoint: classifier {desc} is not part of the backbone and was dropped "
            "(load it into the 'lightcnn-fc2' head if you need it)",
            stacklevel=2,
        )
    return state


class LightCNN29(Backbone):
    """LightCNN-29 v2 (MFM, max+avg pooling), 256-d embedding of 128x128 gray faces in [0, 1].

    ``normalize`` returns the L2-normalised embedding as DVG-Face does (default: the raw fc, as
    upstream LightCNN and DVG NeurIPS). ``width``/``image_size`` shrink the net for quick CPU runs and
    ``batchnorm`` adds BN before every MFM so that it learns from scratch in CPU minutes (quick preset);
    the defaults are the released architecture.
    """

    paper: ClassVar[str] = PAPER_29
    input_spec = _gray_spec(128)
    embedding_size = 256
    layers: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)
    #: What the quick preset of the ``dvg`` recipe builds (a few CPU minutes instead of hours).
    quick_params: ClassVar[dict] = {"image_size": 32, "width": 0.25, "batchnorm": True}

    def __init__(
        self,
        embedding_size: int = 256,
        image_size: int = 128,
        width: float = 1.0,
        normalize: bool = False,
        batchnorm: bool = False,
    ):
        super().__init__()
        _check_size(image_size, 16)
        self.embedding_size = embedding_size
        self.input_spec = _gray_spec(image_size)
        self.normalize = normalize
        c1, c2, c3, c4 = _channels((48, 96, 192, 128), width)
        bn = batchnorm
        self.conv1 = MFM(1, c1, 5, 1, 2, batchnorm=bn)
        self.block1 = nn.Sequential(*[ResBlock(c1, bn) for _ in range(self.layers[0])])
        self.group1 = Group(c1, c2, batchnorm=bn)
        self.block2 = nn.Sequential(*[ResBlock(c2, bn) for _ in range(self.layers[1])])
        self.group2 = Group(c2, c3, batchnorm=bn)
        self.block3 = nn.Sequential(*[ResBlock(c3, bn) for _ in range(self.layers[2])])
        self.group3 = Group(c3, c4, batchnorm=bn)
        self.block4 = nn.Sequential(*[ResBlock(c4, bn) for _ in range(self.layers[3])])
        self.group4 = Group(c4, c4, batchnorm=bn)
        side = image_size // 16
        self.fc = nn.Linear(c4 * side * side, embedding_size)

    def features(self, x: Tensor) -> Tensor:
        """The raw 256-d ``fc`` output (before any normalisation)."""
        x = _pool(self.conv1(x))
        x = _pool(self.group1(self.block1(x)))
        x = _pool(self.group2(self.block2(x)))
        x = self.group3(self.block3(x))  # no pooling after group3
        x = _pool(self.group4(self.block4(x)))
        return self.fc(x.flatten(1))  # C,H,W order, as view(B, -1)

    def forward(self, x: Tensor) -> Tensor:
        fc = self.features(x)
        return F.normalize(fc, dim=1) if self.normalize else fc

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        return convert_lightcnn_checkpoint(checkpoint)


class LightCNN9(Backbone):
    """LightCNN-9 (MFM, max-pooling), 256-d embedding of 128x128 gray faces in [0, 1]."""

    paper: ClassVar[str] = "Wu, He, Sun, Tan: A Light CNN for Deep Face Representation with Noisy Labels, TIFS 2018"
    input_spec = _gray_spec(128)
    embedding_size = 256
    quick_params: ClassVar[dict] = {"image_size": 32, "width": 0.25, "batchnorm": True}

    def __init__(
        self,
        embedding_size: int = 256,
        image_size: int = 128,
        width: float = 1.0,
        normalize: bool = False,
        batchnorm: bool = False,
    ):
        super().__init__()
        _check_size(image_size, 16)
        self.embedding_size = embedding_size
        self.input_spec = _gray_spec(image_size)
        self.normalize = normalize
        c1, c2, c3, c4 = _channels((48, 96, 192, 128), width)
        pool = lambda: nn.MaxPool2d(2, 2, ceil_mode=True)  # noqa: E731
        bn = batchnorm
        self.features_ = nn.Sequential(
            MFM(1, c1, 5, 1, 2, batchnorm=bn),
            pool(),
            Group(c1, c2, batchnorm=bn),
            pool(),
            Group(c2, c3, batchnorm=bn),
            pool(),
            Group(c3, c4, batchnorm=bn),
            Group(c4, c4, batchnorm=bn),
            pool(),
        )
        side = image_size // 16
        self.fc1 = MFM(c4 * side * side, embedding_size, linear=True)

    def features(self, x: Tensor) -> Tensor:
        return self.fc1(self.features_(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        fc = self.features(x)
        return F.normalize(fc, dim=1) if self.normalize else fc

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        # Upstream names the conv stack ``features``; ours is ``features_`` (``features`` is the method).
        state = convert_lightcnn_checkpoint(checkpoint)
        return {("features_" + k[len("features") :] if k.startswith("features.") else k): v for k, v in state.items()}
