"""The residual blocks of torchvision-style ResNets (He et al., CVPR 2016), with torchvision's key names.

``conv1``/``bn1``/``conv2``/``bn2`` (``conv3``/``bn3`` in the bottleneck) and a ``downsample``
projection (1x1 conv + BN, keys ``downsample.0`` / ``downsample.1``) that exists only where the shape
changes: the names released face ResNets (VirFace, DCR) keep in their checkpoints.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (BatchNorm follows)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    """The shortcut where a block changes shape: 1x1 convolution (no bias) with ``stride``, then BatchNorm."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    return projection(cin, cout, stride) if stride != 1 or cin != cout else None


class BasicBlock(nn.Module):
    """conv3x3 (stride) - BN - ReLU - conv3x3 - BN, + shortcut, ReLU (ResNet-18/34)."""

    expansion: ClassVar[int] = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """conv1x1 - BN - ReLU - conv3x3 - BN - ReLU - conv1x1 (x4 channels) - BN, + shortcut, ReLU (ResNet-50+).

    ``stride_on="conv2"`` puts the stride on the 3x3 convolution (torchvision's "ResNet v1.5", VirFace);
    ``"conv1"`` puts it on the first 1x1, as the original Caffe ResNets do.
    """

    expansion: ClassVar[int] = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, stride_on: Literal["conv1", "conv2"] = "conv2"):
        super().__init__()
        if stride_on not in ("conv1", "conv2"):
            raise ValueError(f"stride_on must be 'conv1' or 'conv2', got {stride_on!r}")
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, stride=stride if stride_on == "conv1" else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride if stride_on == "conv2" else 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)
