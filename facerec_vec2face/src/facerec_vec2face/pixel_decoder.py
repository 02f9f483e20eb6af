"""Vec2Face's pixel decoder: a VQGAN-style conv decoder without quantiser or attention.

Key names follow ``im_decoder.Decoder``. Two quirks of the original are kept for weight parity:
ResnetBlock convs have no bias, and a block whose channel count changes returns
``nin_shortcut(h) + h`` (its input is discarded).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.nin_shortcut = nn.Conv2d(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.nin_shortcut is not None:
            return self.nin_shortcut(h) + h  # the original's quirk: x is dropped
        return x + h


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpLevel(nn.Module):
    def __init__(self, blocks: nn.ModuleList, upsample: Upsample | None):
        super().__init__()
        self.block = blocks
        if upsample is not None:
            self.upsample = upsample


class Mid(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)


class PixelDecoder(nn.Module):
    """z [B, z_channels, s, s] -> image [B, out_ch, s*2^(L-1), ...] in [-1, 1] space (not clamped)."""

    def __init__(
        self,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        out_ch: int = 3,
        norm_groups: int = 32,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.num_levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = Mid(block_in, norm_groups)
        levels: list[UpLevel] = []
        for level in reversed(range(self.num_levels)):
            block_out = ch * ch_mult[level]
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, norm_groups, dropout))
                block_in = block_out
            levels.insert(0, UpLevel(blocks, Upsample(block_in) if level != 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for level in reversed(range(self.num_levels)):
            up = self.up[level]
            for block in up.block:
                h = block(h)
            if level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
