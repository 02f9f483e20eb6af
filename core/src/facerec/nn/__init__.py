"""Shared building blocks of face networks, and core's IResNet backbones.

- :mod:`.resnet_blocks`: torchvision-style ``BasicBlock`` / ``Bottleneck`` (VirFace, DCR use them).
- :mod:`.iresnet_blocks`: insightface's ``IBasicBlock``, the IResNet stem and output head.
- :mod:`.se`: squeeze-and-excitation.
- :mod:`.iresnet`: IResNet-18/34/50/100/200 and the SE variants, registered as ``iresnet*`` backbones.
- :mod:`.small_cnn`: ``SmallCNN``, core's small fast backbone for quick runs and tests (``small-cnn``).

Every block keeps the key names of the original code it comes from, so released checkpoints load
into networks built from these blocks without renaming.
"""

from .iresnet import (
    LAYERS as IRESNET_LAYERS,
    IResNet,
    IResNet18,
    IResNet34,
    IResNet50,
    IResNet50SE,
    IResNet100,
    IResNet100SE,
    IResNet200,
)
from .iresnet_blocks import IBasicBlock, iresnet_head, iresnet_stem
from .resnet_blocks import BasicBlock, Bottleneck, conv3x3, projection
from .se import SqueezeExcite
from .small_cnn import SmallCNN

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "conv3x3",
    "projection",
    "SqueezeExcite",
    "IBasicBlock",
    "iresnet_head",
    "iresnet_stem",
    "IRESNET_LAYERS",
    "IResNet",
    "IResNet18",
    "IResNet34",
    "IResNet50",
    "IResNet100",
    "IResNet200",
    "IResNet50SE",
    "IResNet100SE",
    "SmallCNN",
]
