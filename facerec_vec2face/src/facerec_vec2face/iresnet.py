"""insightface IResNet (arcface_torch layout), plain and SE, as used by Vec2Face and SOTA-FR.

Key names follow the original ``iresnet.py`` so released checkpoints (plain state dicts, optionally
``module.``-prefixed) load strictly. ``image_size`` and ``width`` shrink the network for CPU runs;
the defaults are the paper's 112x112 / 64-channel stem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from facerec.api import Backbone, InputSpec, unwrap_state_dict
from facerec.errors import WeightsError

#: Blocks per stage. "200" is insightface's real r200 (SOTA-FR's copy reuses r100's layout by mistake).
LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6),
}

PAPER = ("Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019 "
         "(insightface IResNet); used by Wu et al., Vec2Face, ICLR 2025")


class SEModule(nn.Module):
    """Squeeze-excitation gate (1x1 convs without bias), applied by SOTA-FR to the shortcut branch."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = max(1, channels // reduction)  # narrow CPU variants would get 0 channels
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 se: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample
        # SOTA-FR's "se" mode: the gate multiplies the shortcut, not the residual branch.
        self.attn = SEModule(planes) if se else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        if self.attn is not None:
            identity = self.attn(identity)
        return out + identity


class IResNet(Backbone):
    """insightface IResNet: 112x112 RGB in [-1, 1] -> 512-D (not normalised) embedding."""

    paper: ClassVar[str] = PAPER
    input_spec: ClassVar[InputSpec] = InputSpec(size=112, color="RGB", mean=0.5, std=0.5)
    embedding_size: int = 512
    depth: ClassVar[int] = 50
    se: ClassVar[bool] = False

    def __init__(self, embedding_size: int = 512, dropout: float = 0.4, image_size: int = 112,
                 width: int = 64, fp16: bool = False, zero_init_residual: bool = True):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        self.embedding_size = embedding_size
        self.input_spec = InputSpec(size=image_size, color="RGB", mean=0.5, std=0.5)
        self.fp16 = fp16
        layers = LAYERS[self.depth]
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1])
        self.layer3 = self._make_layer(widths[2], layers[2])
        self.layer4 = self._make_layer(widths[3], layers[3])
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = image_size // 16
        self.fc = nn.Linear(widths[3] * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # fixed at 1 as in insightface
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
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False),
                                   nn.BatchNorm2d(planes, eps=1e-5))
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
