"""Frozen estimators used to steer generation: identity (ArcFace), quality (MagFace norm), pose (6DRepNet).

All take generated images in Vec2Face's [-1, 1] RGB space. Their parameters are frozen
(``requires_grad=False``), so gradient steps on the identity vector never compute parameter grads.
"""

from __future__ import annotations

import torch  # noqa: F401
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Backbone

from .sixdrepnet import SixDRepNet, euler_degrees


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Embedder(nn.Module):
    """Image in [-1, 1] -> raw embedding. A facerec Backbone gets canonical [0, 1] images through its
    input spec; any other module is fed the [-1, 1] tensor directly (the original estimators' input)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = freeze(model)

    def forward(self, images: Tensor) -> Tensor:
        if isinstance(self.model, Backbone):
            return self.model.embed((images + 1) / 2)
        if images.shape[-1] != 112:
            images = F.interpolate(images, size=(112, 112), mode="bilinear", align_corners=False)
        return self.model(images)


class QualityEstimator(Embedder):
    """MagFace quality: the L2 norm of the (un-normalised) MagFace embedding."""

    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images).norm(dim=1)


class PoseEstimator(nn.Module):
    """6DRepNet fed as Vec2Face feeds it: BGR, (img+1)/2, 112x112, no ImageNet normalisation.
    Returns (pitch, yaw, roll) in degrees, [B, 3]."""

    def __init__(self, model: SixDRepNet):
        super().__init__()
        self.model = freeze(model)

    def forward(self, images: Tensor) -> Tensor:
        x = (images.flip(1) + 1) / 2
        if x.shape[-1] != 112:
            x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
        return euler_degrees(self.model(x))


def differentiable_yaw(model: PoseEstimator, images: Tensor) -> Tensor:
    """Yaw in degrees with gradients w.r.t. the images (euler_degrees casts to float32, which is fine)."""
    return model(images)[:, 1].clamp(-90, 90)


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    return 1 - F.cosine_similarity(a, b, dim=1)
