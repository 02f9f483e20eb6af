"""VirFace's face ResNet-18..152: 7x7 stride-1 stem without max-pool, four stride-2 stages, the flattened
final map -> Linear -> BatchNorm1d embedding (un-normalised). Key names match ``model/resnet.py``.

The blocks are core's torchvision-style ones (``facerec.nn``): same key names, and the bottleneck's stride
on the 3x3 convolution, as in the original."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Backbone, InputSpec
from facerec.nn import BasicBlock, Bottleneck

from .checkpoints import convert_part

PAPER = (
    "Li, Guo, Li, Chen, Wang, Zuo, Zhang: VirFace: Enhancing Face Recognition via Unlabeled Shallow Data, "
    "CVPR 2021 (sandwichfish/VirFace)"
)
LAYERS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _map_side(image_size: int) -> int:
    side = image_size - 4  # 7x7, stride 1, padding 1
    for _ in range(4):
        side = (side - 1) // 2 + 1  # 3x3 (or 1x1 downsample) stride 2, padding 1
    return side


class VirFaceResNet(Backbone):
    """VirFace face ResNet (no max-pool, stride-2 stages, flatten -> Linear -> BatchNorm1d), 112x112 RGB [-1,1]."""

    paper = PAPER
    input_spec = InputSpec(size=112, color="RGB", mean=0.5, std=0.5)
    embedding_size = 512
    depth: ClassVar[int] = 50
    recipe: ClassVar[str] = "virface"  # `facerun --backbone virface-resnetN` runs the VirFace demo

    def __init__(self, embedding_size: int = 512, image_size: int = 112, width: int = 64):
        super().__init__()
        if image_size < 20:
            raise ValueError(f"image_size must be >= 20, got {image_size}")
        kind, counts = LAYERS[self.depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.embedding_size = embedding_size
        self.input_spec = InputSpec(size=image_size, color="RGB", mean=0.5, std=0.5)
        self.conv1 = nn.Conv2d(3, width, 7, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, n in enumerate(counts):
            planes = width * 2**i
            blocks = []
            for b in range(n):
                blocks.append(block(cin, planes, 2 if b == 0 else 1))
                cin = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        side = _map_side(image_size)
        self.feature = nn.Linear(cin * side * side, embedding_size)
        self.bn_feature = nn.BatchNorm1d(embedding_size)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn_feature(self.feature(x.flatten(1)))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A VirFace training checkpoint (``backbone`` entry, optional ``module.``) or a bare state dict."""
        return convert_part(checkpoint, "backbone")


class VirFaceResNet18(VirFaceResNet):
    """VirFace face ResNet-18 (BasicBlock), 112x112 RGB [-1,1] -> 512-d embedding."""

    depth = 18


class VirFaceResNet34(VirFaceResNet):
    """VirFace face ResNet-34 (BasicBlock), 112x112 RGB [-1,1] -> 512-d embedding."""

    depth = 34


class VirFaceResNet50(VirFaceResNet):
    """VirFace face ResNet-50 (Bottleneck, stride on the 3x3), 112x112 RGB [-1,1] -> 512-d embedding."""

    depth = 50


class VirFaceResNet101(VirFaceResNet):
    """VirFace face ResNet-101 (Bottleneck), 112x112 RGB [-1,1] -> 512-d embedding."""

    depth = 101


class VirFaceResNet152(VirFaceResNet):
    """VirFace face ResNet-152 (Bottleneck), 112x112 RGB [-1,1] -> 512-d embedding."""

    depth = 152
