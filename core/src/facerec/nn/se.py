"""Squeeze-and-excitation (Hu et al., CVPR 2018): a per-channel gate computed from the global average."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(avg_pool(x)))))`` with ``fc1``/``fc2`` as 1x1 convolutions.

    ``channels // reduction`` hidden channels (at least one, so narrow CPU variants still build).
    ``bias=False`` is SOTA-FR's ``SEModule`` (the IResNet-SE gate, key names ``fc1``/``fc2``);
    the SENet paper's gate has biases (``bias=True``).
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
