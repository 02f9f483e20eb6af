"""Core's built-in backbone: a small, fast CNN for quick runs, tests and plugin templates."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..api import Backbone, InputSpec


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.PReLU(cout),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.PReLU(cout),
        nn.MaxPool2d(2),
    )


class SmallCNN(Backbone):
    """Small 4-stage CNN (about 0.4 M parameters), 112x112 RGB in [-1, 1], trains in CPU minutes."""

    paper = "facerec built-in (no paper)"
    input_spec = InputSpec(size=112, color="RGB", mean=0.5, std=0.5)
    #: image size the quick preset of the standard recipe uses unless ``backbone.image_size`` is given
    #: (rendering and training at 32 px keeps ``facerun --backbone small-cnn`` within CPU minutes).
    quick_image_size = 32
    #: checked before the network is built (facerec.params)
    param_ranges = {"embedding_size": (1, 65536), "width": (1, 1024), "image_size": (16, 4096)}

    def __init__(self, embedding_size: int = 128, width: int = 32, image_size: int = 112):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        self.embedding_size = embedding_size
        self.input_spec = InputSpec(size=image_size, color="RGB", mean=0.5, std=0.5)
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, embedding_size)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.bn(self.fc(x))
