"""LightCNN's classifier as a head: dropout(0.5) on the raw fc, then a bias-free linear layer, CE loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from facerec.api import Head, HeadOutput, unwrap_state_dict
from facerec.errors import WeightsError
from torch import Tensor, nn


class LightCNNClassifier(Head):
    """LightCNN / DVG-Face classifier (fc2 / fc2_): dropout, bias-free linear, softmax cross-entropy."""

    paper: ClassVar[str] = "Fu et al., DVG-Face, TPAMI 2021 (LightCNN-29 v2 fc2_)"

    def __init__(self, embedding_size: int = 256, num_classes: int = 725, dropout: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.dropout = dropout
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default init

    def logits(self, embeddings: Tensor) -> Tensor:
        return F.linear(F.dropout(embeddings, self.dropout, self.training), self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.logits(embeddings)
        return HeadOutput(loss=F.cross_entropy(logits, labels), logits=logits)

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A LightCNN checkpoint (upstream ``fc2``, DVG ``fc2_``) -> this head's state dict."""
        state = unwrap_state_dict(checkpoint)
        for key in ("fc2_.weight", "fc2.weight", "weight"):
            if key in state:
                return {"weight": state[key]}
        raise WeightsError("LightCNN checkpoint has no classifier (expected 'fc2.weight' or 'fc2_.weight')")
