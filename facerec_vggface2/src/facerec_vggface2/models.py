"""VGGFace2 ResNet-50 and SE-ResNet-50, Caffe style (stride on the first 1x1 conv, ceil-mode max-pool).

Module names match the cydonia999/VGGFace2-pytorch state dict exactly, so the released ``*_weight.pkl``
files load without renaming. ``forward`` returns the flattened 2048-d pooled feature (``include_top=False``
of the original); ``logits`` adds the 8631-way classifier that every released file carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Backbone, InputSpec

from .convert import convert_vggface2_checkpoint

#: Mean of the Caffe models in BGR order, 0..255 scale (from resnet50_ft.prototxt).
MEAN_BGR = (91.4953, 103.8827, 131.0912)
#: Training identities of VGGFace2 (the classifier width of the released weights).
N_TRAIN_IDENTITIES = 8631
PAPER = (
    "Cao, Shen, Xie, Parkhi, Zisserman: VGGFace2: A dataset for recognising faces across pose and age, "
    "FG 2018 (PyTorch port: cydonia999/VGGFace2-pytorch)"
)
#: Core's ``vggface2`` alignment template is this geometry: a 256 loose crop (the ArcFace layout scaled to
#: 224/1.3, centred, as the dataset's 1.3x detector box), resized 256 and centre-cropped 224.
VGGFACE2_SPEC = InputSpec(size=224, color="BGR", scale=255.0, mean=MEAN_BGR, std=1.0, resize=256, template="vggface2")


class Bottleneck(nn.Module):
    """Caffe bottleneck: the stride sits on conv1 (1x1); optional squeeze-excitation (conv4/conv5) on the branch."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, se: bool = False):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = se
        if se:
            self.conv4 = nn.Conv2d(out, out // 16, 1)
            self.conv5 = nn.Conv2d(out // 16, out, 1)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        if self.se:
            gate = torch.sigmoid(self.conv5(F.relu(self.conv4(F.adaptive_avg_pool2d(y, 1)))))
            y = y * gate
        return F.relu(y + identity, inplace=True)


class _VGGFace2Net(Backbone):
    """Shared body of both architectures."""

    input_spec = VGGFACE2_SPEC
    embedding_size = 2048
    paper = PAPER
    se: ClassVar[bool] = False
    arch: ClassVar[str] = ""

    def __init__(self, num_classes: int = N_TRAIN_IDENTITIES):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(inplanes, planes, stride if b == 0 else 1, se=self.se))
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        # The released files always carry the 8631-way classifier; num_classes=0 drops it.
        self.fc = nn.Linear(2048, num_classes) if num_classes else None
        self._init_weights()

    def _init_weights(self) -> None:
        # The original's init: conv N(0, sqrt(2 / (k*k*out))), BN weight 1 / bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Network input (BGR, 0..255 minus mean, 224x224) -> 2048-d pooled feature (not normalised)."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def logits(self, x: Tensor) -> Tensor:
        """Network input -> scores over the training identities (the original's ``include_top=True``)."""
        if self.fc is None:
            raise ValueError("this model was built with num_classes=0 and has no classifier")
        return self.fc(self(x))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A released ``*_weight.pkl`` (dict of numpy arrays), a resume ``checkpoint.pth.tar`` dict or a
        facerec state dict -> this class's state dict (num_batches_tracked filled in, keys checked)."""
        return convert_vggface2_checkpoint(checkpoint, se=cls.se)


class VGGFace2ResNet50(_VGGFace2Net):
    """VGGFace2 ResNet-50 (Caffe style), 224x224 BGR mean-subtracted input, 2048-d feature."""

    arch = "resnet50"


class VGGFace2SENet50(_VGGFace2Net):
    """VGGFace2 SE-ResNet-50 (Caffe style), 224x224 BGR mean-subtracted input, 2048-d feature."""

    se = True
    arch = "senet50"


ARCHS: dict[str, type[_VGGFace2Net]] = {"resnet50": VGGFace2ResNet50, "senet50": VGGFace2SENet50}
