"""Vec2Face's PatchGAN discriminator (ViT-VQGAN style, from lucidrains/parti), original key names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from facerec.api import unwrap_state_dict
from facerec.errors import WeightsError

from . import safe_load  # noqa: F401  (admits the checkpoints' argparse.Namespace)


class CrossEmbedLayer(nn.Module):
    """Parallel convs with kernels (3, 7, 15) whose outputs (dim/2, dim/4, rest) are concatenated."""

    def __init__(self, dim_in: int, dim_out: int, kernel_sizes: Sequence[int] = (3, 7, 15), stride: int = 1):
        super().__init__()
        kernels = sorted(kernel_sizes)
        scales = [int(dim_out / 2**i) for i in range(1, len(kernels))]
        scales.append(dim_out - sum(scales))
        self.convs = nn.ModuleList(
            nn.Conv2d(dim_in, d, k, stride=stride, padding=(k - stride) // 2) for k, d in zip(kernels, scales)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class _Block(nn.Module):
    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.groupnorm = nn.GroupNorm(groups, dim)
        self.activation = nn.LeakyReLU(0.1)
        self.project = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.activation(self.groupnorm(x)))


class _ResnetBlock(nn.Module):
    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.block = _Block(dim, groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) + x


class Discriminator(nn.Module):
    """Image [B,3,H,W] in [-1,1] -> patch logits [B,1,H/8-3,W/8-3] (11x11 for 112 input)."""

    def __init__(
        self,
        dims: Sequence[int] = (64, 128, 256, 512),
        channels: int = 3,
        groups: int = 8,
        cross_embed_kernel_sizes: Sequence[int] = (3, 7, 15),
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Sequential(CrossEmbedLayer(channels, dims[0], cross_embed_kernel_sizes), nn.LeakyReLU(0.1))]
        )
        for cin, cout in zip(dims[:-1], dims[1:]):
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 4, stride=2, padding=1),
                    nn.LeakyReLU(0.1),
                    nn.GroupNorm(groups, cout),
                    _ResnetBlock(cout, groups),
                )
            )
        dim = dims[-1]
        self.to_logits = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.LeakyReLU(0.1), nn.Conv2d(dim, 1, 4))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.to_logits(x)

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A Vec2Face training checkpoint (``model_disc``) or a plain discriminator state dict."""
        if isinstance(checkpoint, Mapping) and "model_disc" in checkpoint:
            checkpoint = checkpoint["model_disc"]
        elif isinstance(checkpoint, Mapping) and "model_vec2face" in checkpoint:
            raise WeightsError(
                "this Vec2Face checkpoint holds no 'model_disc' (released generator weights contain the generator only)"
            )
        return unwrap_state_dict(checkpoint)
