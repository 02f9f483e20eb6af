"""DCR trunks: the repository's default BasicBlock ResNet and the paper-like PReLU trunk.

Module and parameter names follow the original code (``conv1``, ``bn1``, ``layer{i}``, ``fc1``,
``fc2``) so that released checkpoints load strictly after only stripping ``module.``. The default trunk's
blocks are core's torchvision ``BasicBlock`` (``facerec.nn``), whose key names the original keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from facerec.nn import BasicBlock, conv3x3
from torch import Tensor, nn


class EmbeddingHead(nn.Module):
    """Shared tail of both trunks: fc1 -> [L2 normalise] = embedding; fc2(embedding) = logits."""

    def _init_head(self, features: int, out_channels: int, num_classes: int, normalized: bool) -> None:
        self.normalized_embeddings = normalized
        self.fc1 = nn.Linear(features, out_channels)
        self.fc2 = nn.Linear(out_channels, num_classes) if num_classes > 0 else None

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def embed_and_logits(self, x: Tensor, with_logits: bool = True) -> tuple[Tensor, Tensor | None]:
        emb = self.fc1(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
        if self.normalized_embeddings:
            emb = F.normalize(emb, dim=1)
        logits = self.fc2(emb) if with_logits and self.fc2 is not None else None
        return emb, logits

    def forward(self, x: Tensor) -> Tensor:
        return self.embed_and_logits(x, with_logits=False)[0]


class ResNetTrunk(EmbeddingHead):
    """The repository's default ``DCRTrunk``: torchvision ResNet with BasicBlocks ``layers`` deep."""

    def __init__(
        self,
        layers: Sequence[int] = (1, 2, 5, 3),
        out_channels: int = 512,
        num_classes: int = 0,
        normalized_embeddings: bool = True,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            blocks = [BasicBlock(cin, width, 1 if i == 1 else 2)] + [BasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = width
        self._init_head(cin, out_channels, num_classes, normalized_embeddings)
        for m in self.modules():  # the original's torchvision init (zero_init_residual off)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class PReLUBlock(nn.Module):
    """``BasicBlock_Modified``: conv-BN-PReLU-conv-BN, + x, PReLU (channel-wise PReLUs)."""

    def __init__(self, channels: int, batch_norm: bool = True):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.conv1 = conv3x3(channels, channels)
        self.bn1 = norm()
        self.relu1 = nn.PReLU(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm()
        self.relu2 = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + x)


class PaperTrunk(EmbeddingHead):
    """The paper-like ``NewDCRTrunk``: each stage = conv3x3 -> MaxPool(2) -> PReLU residual blocks.

    ``batch_norm=False`` is the original's ``--wobn`` (BN replaced by identity, as in the paper).
    """

    def __init__(
        self,
        layers: Sequence[int] = (1, 2, 5, 3),
        out_channels: int = 512,
        num_classes: int = 0,
        normalized_embeddings: bool = True,
        batch_norm: bool = True,
    ):
        super().__init__()
        self.conv1 = conv3x3(3, 32)
        self.bn1 = nn.BatchNorm2d(32) if batch_norm else nn.Identity()
        self.relu = nn.PReLU(32)
        cin = 32
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            # index 1 is the parameterless MaxPool, so blocks are layer{i}.2.. as in the original keys
            stage = [conv3x3(cin, width), nn.MaxPool2d(2, 2)] + [PReLUBlock(width, batch_norm) for _ in range(depth)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            cin = width
        self._init_head(cin, out_channels, num_classes, normalized_embeddings)

    def features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
