"""TemplateNet: the smallest useful backbone, showing what a Backbone must declare."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Backbone, InputSpec


class TemplateNet(Backbone):
    """Three-layer gray-scale CNN with a linear embedding (an example to copy, not a good model)."""

    paper = "facerec plugin template (no paper)"
    # What the weights expect: here gray 64x64 in [0, 1]; facerec derives the data pipeline from it.
    input_spec = InputSpec(size=64, color="GRAY", mean=0.0, std=1.0)

    def __init__(self, embedding_size: int = 64, width: int = 16):
        super().__init__()
        if embedding_size < 1 or width < 1:
            raise ValueError("embedding_size and width must be positive")
        self.embedding_size = embedding_size
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(1, width, 3, padding=1),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            ]
        )
        self.fc = nn.Linear(4 * width, embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.fc(x.mean((2, 3)))
