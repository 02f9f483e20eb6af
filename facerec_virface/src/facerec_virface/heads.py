"""VirFace's ArcFace head (s=32, m=0.5, th/mm fallback) and its VirClass / VirInstance extensions.

Unlabelled samples travel in the batch with label -1 (facerec's convention), so the heads work with any
trainer: ``virclass`` turns every unlabelled embedding of the batch into one extra (virtual) class,
``virinstance`` additionally asks generated features (``generated=``) to classify as their own virtual class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Head, HeadOutput

from .checkpoints import convert_part
from .resnet import PAPER


def arc_logits(x: Tensor, weight: Tensor, targets: Tensor, s: float, m: float) -> Tensor:
    """``s * (onehot*phi + (1-onehot)*cos)`` with ``phi = cos(theta+m)`` where ``cos > cos(pi-m)``, else
    ``cos - sin(pi-m)*m`` (the original's th/mm fallback). ``weight`` rows must be normalised already."""
    cos = F.linear(F.normalize(x), weight)
    sin = torch.sqrt(torch.where(1 - cos * cos > 0, 1 - cos * cos, torch.zeros_like(cos)))
    cos_t = cos.gather(1, targets[:, None])
    sin_t = sin.gather(1, targets[:, None])
    phi = cos_t * math.cos(m) - sin_t * math.sin(m)
    phi = torch.where(cos_t - math.cos(math.pi - m) > 0, phi, cos_t - math.sin(math.pi - m) * m)
    return cos.scatter(1, targets[:, None], phi) * s


class VirFaceArcFace(Head):
    """VirFace ArcFace (s=32, m=0.5, th/mm fallback); unlabelled rows (label -1) are ignored."""

    paper = PAPER

    def __init__(
        self, embedding_size: int = 512, num_classes: int = 84282, s: float = 32.0, m: float = 0.5, dropout: float = 0.5
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.s, self.m = float(s), float(m)
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)
        self.dropout = nn.Dropout(dropout)  # used on labelled features in the virtual modes only

    @staticmethod
    def split(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        known = labels >= 0
        return embeddings[known], labels[known], embeddings[~known]

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        x, y, _ = self.split(embeddings, labels)
        logits = arc_logits(x, F.normalize(self.weight), y, self.s, self.m)
        return HeadOutput(loss=F.cross_entropy(logits, y), logits=logits)

    def virtual_logits(self, x: Tensor, labels: Tensor, unlabeled: Tensor) -> Tensor:
        """VirClass: labelled logits over C + B_u columns (unlabelled features not detached)."""
        weight_all = torch.cat([F.normalize(self.weight), F.normalize(unlabeled)])
        return arc_logits(self.dropout(x), weight_all, labels, self.s, self.m)

    def instance_logits(self, generated: Tensor, unlabeled: Tensor) -> tuple[Tensor, Tensor]:
        """VirInstance: generated features (gen_num*B_u, sample-major) against their own virtual class."""
        b_u = len(unlabeled)
        if b_u == 0 or len(generated) % b_u:
            raise ValueError(f"generated rows ({len(generated)}) must be a multiple of unlabelled rows ({b_u})")
        weight_fix = torch.cat([F.normalize(self.weight), F.normalize(unlabeled).detach()])
        targets = torch.arange(self.num_classes, self.num_classes + b_u, device=generated.device)
        targets = targets.repeat(len(generated) // b_u)
        return arc_logits(generated, weight_fix, targets, self.s, self.m), targets

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A VirFace training checkpoint (``head`` entry) or a bare ``{'weight': ...}``."""
        return convert_part(checkpoint, "head")


class VirClassHead(VirFaceArcFace):
    """VirClass: each unlabelled embedding of the batch (label -1) becomes an extra virtual class."""

    def forward(self, embeddings: Tensor, labels: Tensor, unlabeled: Tensor | None = None) -> HeadOutput:
        x, y, u = self.split(embeddings, labels)
        if unlabeled is not None:
            u = unlabeled
        if len(u) == 0:
            return super().forward(x, y)
        logits = self.virtual_logits(x, y, u)
        return HeadOutput(loss=F.cross_entropy(logits, y), logits=logits)


class VirInstanceHead(VirClassHead):
    """VirInstance: VirClass plus generated features (``generated=``) classified as their own virtual class."""

    def forward(
        self, embeddings: Tensor, labels: Tensor, unlabeled: Tensor | None = None, generated: Tensor | None = None
    ) -> HeadOutput:
        x, y, u = self.split(embeddings, labels)
        if unlabeled is not None:
            u = unlabeled
        out = super().forward(x, y, unlabeled=u)
        if generated is None or len(u) == 0:
            return out
        gl, gt = self.instance_logits(generated, u)
        loss_vi = F.cross_entropy(gl, gt)
        return HeadOutput(
            loss=out.loss + loss_vi,
            logits=out.logits,
            extras={
                "instance_logits": gl,
                "instance_targets": gt,
                "loss_label": out.loss.detach(),
                "loss_instance": loss_vi.detach(),
            },
        )
