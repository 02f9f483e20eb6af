"""The parts of insightface's IResNet (arcface_torch ``backbones/iresnet.py``), with its key names.

insightface keeps the stem (``conv1``, ``bn1``, ``prelu``) and the output head (``bn2``, ``dropout``,
``fc``, ``features``) as direct attributes of the network, and released checkpoints use exactly those
keys; so the stem and head here are builders that return the layers for the network to hold under
those names, not wrapping modules (which would prefix every key).
"""

from __future__ import annotations

from torch import Tensor, nn

from .resnet_blocks import conv3x3
from .se import SqueezeExcite

#: insightface builds every BatchNorm with this eps (torch's default, spelled out in the original).
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3 (stride) - BN, + shortcut; no activation after the sum.

    ``downsample`` is the shortcut of a stage's first block (a ``projection``). Unlike torchvision's
    block, the stride sits on the second convolution. ``se=True`` adds SOTA-FR's squeeze-excitation
    gate as ``attn``, which multiplies the *shortcut*, not the residual branch.
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = downsample
        self.attn = SqueezeExcite(planes, reduction=16, bias=False) if se else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        if self.attn is not None:
            identity = self.attn(identity)
        return out + identity


def iresnet_stem(width: int) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.PReLU]:
    """``conv1``, ``bn1``, ``prelu``: conv3x3 (3 -> width, stride 1, no bias), BN, PReLU; no pooling."""
    return conv3x3(3, width), nn.BatchNorm2d(width, eps=BN_EPS), nn.PReLU(width)


def iresnet_head(
    channels: int, side: int, embedding_size: int, dropout: float
) -> tuple[nn.BatchNorm2d, nn.Dropout, nn.Linear, nn.BatchNorm1d]:
    """``bn2``, ``dropout``, ``fc``, ``features``: BN2d on the last map, flatten, Dropout (in place),
    Linear(channels * side * side -> embedding_size), BatchNorm1d whose weight is fixed at 1.

    The embedding is the BatchNorm1d output, not normalised (insightface's ``features``).
    """
    bn = nn.BatchNorm2d(channels, eps=BN_EPS)
    drop = nn.Dropout(p=dropout, inplace=True)
    fc = nn.Linear(channels * side * side, embedding_size)
    features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
    nn.init.constant_(features.weight, 1.0)
    features.weight.requires_grad = False
    return bn, drop, fc, features
