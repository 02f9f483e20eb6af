"""6DRepNet head-pose estimator (RepVGG-B1g2 in deploy form) and its rotation math.

Key names follow ``SixDRepNet(backbone_name='RepVGG-B1g2', deploy=True)`` (sixdrepnet 0.1.6):
``layer{0..4}[.i].rbr_reparam`` and ``linear_reg``. Training-form RepVGG weights (``rbr_dense``,
``rbr_1x1``, ``rbr_identity``) are fused into deploy form by :func:`fuse_repvgg`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import unwrap_state_dict
from facerec.errors import WeightsError

#: RepVGG-B1: blocks per stage and width multipliers; "g2" = groups 2 on every even layer index.
B1_BLOCKS = (4, 6, 16, 1)
B1_WIDTH = (2.0, 2.0, 2.0, 4.0)


class RepBlock(nn.Module):
    """Deploy-form RepVGG block: ReLU(conv3x3(x) + bias)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.rbr_reparam(x))


class SixDRepNet(nn.Module):
    """Face crop -> rotation matrix [B,3,3] (columns x, y, z of the Gram-Schmidt of the 6-D output)."""

    def __init__(
        self, blocks: tuple[int, ...] = B1_BLOCKS, width: tuple[float, ...] = B1_WIDTH, groups: int = 2, base: int = 64
    ):
        super().__init__()
        self.layer0 = RepBlock(3, min(base, int(base * width[0])), 2, 1)
        cin = min(base, int(base * width[0]))
        index = 1  # RepVGG counts layers from 1 after stage 0; even indices are grouped
        for stage, (n, w) in enumerate(zip(blocks, width), start=1):
            cout = int(base * 2 ** (stage - 1) * w)
            layers = []
            for i in range(n):
                layers.append(RepBlock(cin, cout, 2 if i == 0 else 1, groups if index % 2 == 0 else 1))
                cin, index = cout, index + 1
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear_reg = nn.Linear(cin, 6)

    def ortho6d(self, x: Tensor) -> Tensor:
        for name in ("layer0", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.linear_reg(torch.flatten(self.gap(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return rotation_from_ortho6d(self.ortho6d(x))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """Deploy state dict as released; training-form RepVGG weights are fused first."""
        state = unwrap_state_dict(checkpoint)
        if any(".rbr_dense." in k for k in state):
            state = fuse_repvgg(state)
        return state


def _normalize(v: Tensor) -> Tensor:
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-8)


def rotation_from_ortho6d(p: Tensor) -> Tensor:
    x = _normalize(p[:, 0:3])
    z = _normalize(torch.linalg.cross(x, p[:, 3:6], dim=1))
    y = torch.linalg.cross(z, x, dim=1)
    return torch.stack([x, y, z], dim=2)


def euler_from_rotation(r: Tensor) -> Tensor:
    """(pitch, yaw, roll) in radians, 6DRepNet's convention (float32 as the original allocates them)."""
    sy = torch.sqrt(r[:, 0, 0] ** 2 + r[:, 1, 0] ** 2)
    singular = sy < 1e-6
    pitch = torch.where(singular, torch.atan2(-r[:, 1, 2], r[:, 1, 1]), torch.atan2(r[:, 2, 1], r[:, 2, 2]))
    yaw = torch.atan2(-r[:, 2, 0], sy)
    roll = torch.where(singular, torch.zeros_like(sy), torch.atan2(r[:, 1, 0], r[:, 0, 0]))
    return torch.stack([pitch, yaw, roll], dim=1).float()


def euler_degrees(r: Tensor) -> Tensor:
    """(pitch, yaw, roll) in degrees, float32 (``* 180 / pi`` as two float32 ops, like the original)."""
    return euler_from_rotation(r) * 180 / math.pi


def _fuse(kernel: Tensor, bn: dict[str, Tensor], eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    std = (bn["running_var"] + eps).sqrt()
    t = (bn["weight"] / std).reshape(-1, 1, 1, 1)
    return kernel * t, bn["bias"] - bn["running_mean"] * bn["weight"] / std


def fuse_repvgg(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Training-form RepVGG (3x3+BN, 1x1+BN, identity BN) -> deploy ``rbr_reparam`` weights."""
    out: dict[str, Tensor] = {}
    blocks = sorted({k.split(".rbr_dense.")[0] for k in state if ".rbr_dense." in k})
    for k, v in state.items():
        if not re.search(r"\.rbr_(dense|1x1|identity)\.", k):
            out[k] = v
    for blk in blocks:

        def bn(prefix: str) -> dict[str, Tensor]:
            return {n: state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")}

        try:
            k3, b3 = _fuse(state[f"{blk}.rbr_dense.conv.weight"], bn(f"{blk}.rbr_dense.bn"))
            k1, b1 = _fuse(state[f"{blk}.rbr_1x1.conv.weight"], bn(f"{blk}.rbr_1x1.bn"))
        except KeyError as exc:
            raise WeightsError(f"RepVGG block {blk!r} lacks {exc.args[0]!r}") from None
        kernel, bias = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if f"{blk}.rbr_identity.weight" in state:
            cout, cin_g = kernel.shape[:2]
            ident = torch.zeros_like(kernel)
            ident[torch.arange(cout), torch.arange(cout) % cin_g, 1, 1] = 1.0
            ki, bi = _fuse(ident, bn(f"{blk}.rbr_identity"))
            kernel, bias = kernel + ki, bias + bi
        out[f"{blk}.rbr_reparam.weight"], out[f"{blk}.rbr_reparam.bias"] = kernel, bias
    return out
