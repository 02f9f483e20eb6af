"""The three MTCNN networks (Zhang et al. 2016): P-Net (fully convolutional proposals), R-Net (24x24
refinement) and O-Net (48x48 output with 5 landmarks).

Inputs are RGB patches scaled as ``(pixel - 127.5) / 128`` (0..255 pixels), as in the released
weights. Every net returns ``(face probability, box offsets[, landmarks])``; box offsets are
fractions of the box side, landmarks are ``[N, 5, 2]`` (x, y) fractions of the box.

Layer names are ours; :mod:`facerec.data.detect.weights` converts the released state dicts
(whose dense layers read the feature map transposed, from the Caffe original) into them.
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=k), nn.PReLU(cout)]


def _pool(k: int) -> nn.Module:
    return nn.MaxPool2d(k, 2, ceil_mode=True)


class PNet(nn.Module):
    """Proposal net: any image -> a face-probability map and box offsets at stride 2 (12x12 cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*_conv(3, 10, 3), _pool(2), *_conv(10, 16, 3), *_conv(16, 32, 3))
        self.score = nn.Conv2d(32, 2, kernel_size=1)
        self.box = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` -> probability ``[B, H', W']``, offsets ``[B, 4, H', W']``."""
        h = self.trunk(x)
        return self.score(h).softmax(1)[:, 1], self.box(h)


class RNet(nn.Module):
    """Refinement net: 24x24 patches -> face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            *_conv(3, 28, 3),
            _pool(3),
            *_conv(28, 48, 3),
            _pool(3),
            *_conv(48, 64, 2),
            nn.Flatten(),
            nn.Linear(576, 128),
            nn.PReLU(128),
        )
        self.score = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, 3, 24, 24]`` -> probability ``[N]``, offsets ``[N, 4]``."""
        h = self.trunk(x)
        return self.score(h).softmax(1)[:, 1], self.box(h)


class ONet(nn.Module):
    """Output net: 48x48 patches -> face probability, box offsets and 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            *_conv(3, 32, 3),
            _pool(3),
            *_conv(32, 64, 3),
            _pool(3),
            *_conv(64, 64, 3),
            _pool(2),
            *_conv(64, 128, 2),
            nn.Flatten(),
            nn.Linear(1152, 256),
            nn.PReLU(256),
        )
        self.score = nn.Linear(256, 2)
        self.box = nn.Linear(256, 4)
        self.points = nn.Linear(256, 10)  # (x, y) interleaved per landmark

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[N, 3, 48, 48]`` -> probability ``[N]``, offsets ``[N, 4]``, landmarks ``[N, 5, 2]``."""
        h = self.trunk(x)
        return self.score(h).softmax(1)[:, 1], self.box(h), self.points(h).view(-1, 5, 2)
