"""Classification heads with angular / additive margins (softmax, NormFace, CosFace, ArcFace, combined).

All margin heads share one computation: ``cos = normalize(x) @ normalize(W).T``; the target-class
cosine is replaced by ``psi(cos)``; the logits are ``s * cos`` (target: ``s * psi``); the loss is
cross-entropy. The margin is applied only where the label is known (labels ``< 0`` are ignored).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..api import Head, HeadOutput


def _check(embedding_size: int, num_classes: int, scale: float | None = None) -> None:
    if embedding_size <= 0:
        raise ValueError(f"embedding_size must be positive, got {embedding_size}")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if scale is not None and scale <= 0:
        raise ValueError(f"s (scale) must be positive, got {scale}")


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    # Float32 loss even under autocast; rows with label < 0 (unknown) are ignored.
    return F.cross_entropy(logits.float(), labels, ignore_index=-1) if (labels >= 0).any() else logits.sum() * 0.0


#: checked before a head is built (facerec.params): the class-centre matrix is num_classes x embedding_size
HEAD_RANGES = {"embedding_size": (1, 65536), "num_classes": (1, 10**8), "s": (0, 10**4)}


class SoftmaxHead(Head):
    """Plain softmax classifier: a linear layer (optionally with bias) and cross-entropy."""

    param_ranges = HEAD_RANGES

    def __init__(self, embedding_size: int, num_classes: int, bias: bool = True):
        super().__init__()
        _check(embedding_size, num_classes)
        self.embedding_size, self.num_classes = embedding_size, num_classes
        self.fc = nn.Linear(embedding_size, num_classes, bias=bias)

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.fc(embeddings)
        return HeadOutput(loss=_cross_entropy(logits, labels), logits=logits)


class MarginHead(Head):
    """Base of the normalised heads: class centres ``weight [C, D]``, scale ``s``, margin function ``psi``."""

    param_ranges = HEAD_RANGES

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0):
        super().__init__()
        _check(embedding_size, num_classes, s)
        self.embedding_size, self.num_classes, self.s = embedding_size, num_classes, float(s)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: Tensor, weight: Tensor | None = None) -> Tensor:
        """Cosine between every embedding and every (given) class centre, computed in float32."""
        w = self.weight if weight is None else weight
        return F.linear(F.normalize(embeddings.float()), F.normalize(w.float())).clamp(-1.0, 1.0)

    def margin(self, target_cos: Tensor) -> Tensor:
        """``psi``: the modified target cosine. Identity here (normalised softmax)."""
        return target_cos

    def margin_logits(self, cos: Tensor, labels: Tensor) -> Tensor:
        """Scaled logits with the margin applied to each row's target column (vectorised)."""
        known = labels >= 0
        rows = torch.nonzero(known).squeeze(1)
        cols = labels[rows]
        target = cos[rows, cols]
        cos = cos.index_put((rows, cols), self.margin(target))
        return cos * self.s

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.margin_logits(self.cosine(embeddings), labels)
        return HeadOutput(loss=_cross_entropy(logits, labels), logits=logits)


class NormSoftmaxHead(MarginHead):
    """Normalised softmax (NormFace): cosine logits scaled by ``s``, no margin."""

    paper = "Wang et al., NormFace: L2 Hypersphere Embedding for Face Verification, ACM MM 2017"

    def __init__(self, embedding_size: int, num_classes: int, s: float = 30.0):
        super().__init__(embedding_size, num_classes, s)


class CosFaceHead(MarginHead):
    """CosFace / AM-softmax: target logit ``s * (cos - m)``."""

    paper = "Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition, CVPR 2018"

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(embedding_size, num_classes, s)
        self.m = float(m)

    def margin(self, target_cos: Tensor) -> Tensor:
        return target_cos - self.m


class ArcFaceHead(MarginHead):
    """ArcFace: target logit ``s * cos(theta + m)``; easy-margin or th/mm fallback where theta + m > pi.

    ``easy_margin``: apply the margin only where ``cos > 0`` (else keep ``cos``).
    ``fallback`` (default, insightface): where ``cos <= cos(pi - m)`` use ``cos - sin(pi - m) * m``
    so that the target logit stays monotonic in theta. ``fallback=False`` uses ``cos(theta + m)`` everywhere.
    """

    paper = "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
        fallback: bool = True,
    ):
        super().__init__(embedding_size, num_classes, s)
        if not 0.0 <= m < math.pi:
            raise ValueError(f"m must be in [0, pi), got {m}")
        self.m, self.easy_margin, self.fallback = float(m), bool(easy_margin), bool(fallback)
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th = math.cos(math.pi - m)  # theta + m > pi beyond this cosine
        self.mm = math.sin(math.pi - m) * m

    def margin(self, target_cos: Tensor) -> Tensor:
        sine = torch.sqrt((1.0 - target_cos * target_cos).clamp_min(0.0))
        phi = target_cos * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            return torch.where(target_cos > 0, phi, target_cos)
        if self.fallback:
            return torch.where(target_cos > self.th, phi, target_cos - self.mm)
        return phi


class CombinedMarginHead(MarginHead):
    """Combined margin (insightface): target logit ``s * (cos(m1 * theta + m2) - m3)``.

    ``m1=1, m2=0.5, m3=0`` is ArcFace; ``m1=1, m2=0, m3=0.35`` is CosFace; ``m1>1`` is SphereFace-like.
    """

    paper = "Deng et al., ArcFace (combined margin loss, section 3.3), CVPR 2019"

    def __init__(
        self, embedding_size: int, num_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2
    ):
        super().__init__(embedding_size, num_classes, s)
        if m1 <= 0:
            raise ValueError(f"m1 must be positive, got {m1}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def margin(self, target_cos: Tensor) -> Tensor:
        if self.m1 == 1.0 and self.m2 == 0.0:
            return target_cos - self.m3
        # acos has an infinite derivative at +-1: keep the argument strictly inside.
        theta = torch.acos(target_cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        return torch.cos(self.m1 * theta + self.m2) - self.m3
