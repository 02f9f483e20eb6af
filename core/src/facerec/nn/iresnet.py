"""insightface IResNet-18..200 (arcface_torch layout) and SOTA-FR's SE variants, as core backbones.

Key names follow the original ``iresnet.py`` so released checkpoints (plain state dicts, optionally
``module.``-prefixed) load strictly. ``image_size`` and ``width`` shrink the network for CPU runs;
the defaults are the paper's 112x112 / 64-channel stem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..api import Backbone, InputSpec, unwrap_state_dict
from ..errors import WeightsError
from .iresnet_blocks import IBasicBlock, iresnet_head, iresnet_stem
from .resnet_blocks import projection

#: Blocks per stage. "200" is insightface's real r200 (SOTA-FR's copy reuses r100's layout by mistake).
LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}

PAPER = (
    "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019 "
    "(insightface IResNet); used by Wu et al., Vec2Face, ICLR 2025"
)


class IResNet(Backbone):
    """insightface IResNet: 112x112 RGB in [-1, 1] -> 512-D (not normalised) embedding."""

    paper: ClassVar[str] = PAPER
    input_spec = InputSpec(size=112, color="RGB", mean=0.5, std=0.5)
    embedding_size: int = 512
    depth: ClassVar[int] = 50
    se: ClassVar[bool] = False

    def __init__(
        self,
        embedding_size: int = 512,
        dropout: float = 0.4,
        image_size: int = 112,
        width: int = 64,
        fp16: bool = False,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        self.embedding_size = embedding_size
        self.input_spec = InputSpec(size=image_size, color="RGB", mean=0.5, std=0.5)
        self.fp16 = fp16
        layers = LAYERS[self.depth]
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.inplanes = width
        self.conv1, self.bn1, self.prelu = iresnet_stem(width)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1])
        self.layer3 = self._make_layer(widths[2], layers[2])
        self.layer4 = self._make_layer(widths[3], layers[3])
        # four stride-2 stages: 112 -> 7
        self.bn2, self.dropout, self.fc, self.features = iresnet_head(
            widths[3], image_size // 16, embedding_size, dropout
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Residual branches start at zero (insightface's option, on here): with normal(0, 0.1)
            # convs a fresh r100/r200 otherwise overflows to NaN in eval mode before any training.
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = projection(self.inplanes, planes, 2)
        # Only block 0 of a stage gets the SE gate (SOTA-FR passes ``mode`` to the first block only).
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample, se=self.se)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=self.fp16 and x.device.type == "cuda"):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
        # fp16 training: the embedding layers run in float32, as insightface's
        return self.features(self.fc(x.float() if self.fp16 else x))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """Plain insightface/SOTA-FR state dict (optionally ``module.``-prefixed or under ``state_dict``)."""
        if not isinstance(checkpoint, Mapping):
            raise WeightsError(f"IResNet checkpoint must be a state dict, got {type(checkpoint).__name__}")
        return unwrap_state_dict(checkpoint)


class IResNet18(IResNet):
    """insightface IResNet-18 ([2,2,2,2]): 112x112 RGB in [-1, 1] -> 512-D embedding."""

    depth = 18


class IResNet34(IResNet):
    """insightface IResNet-34 ([3,4,6,3]): 112x112 RGB in [-1, 1] -> 512-D embedding."""

    depth = 34


class IResNet50(IResNet):
    """insightface IResNet-50 ([3,4,14,3]): 112x112 RGB in [-1, 1] -> 512-D embedding."""

    depth = 50


class IResNet100(IResNet):
    """insightface IResNet-100 ([3,13,30,3]), Vec2Face's ArcFace/MagFace estimators: 112x112 -> 512-D."""

    depth = 100


class IResNet200(IResNet):
    """insightface IResNet-200 with its real depth ([6,26,60,6]): 112x112 RGB in [-1, 1] -> 512-D."""

    depth = 200


class IResNet50SE(IResNet):
    """IResNet-50 with SE gates on each stage's first shortcut (SOTA-FR; the HSFace FR models)."""

    depth = 50
    se = True


class IResNet100SE(IResNet):
    """IResNet-100 with SE gates on each stage's first shortcut (SOTA-FR ``mode='se'``)."""

    depth = 100
    se = True
