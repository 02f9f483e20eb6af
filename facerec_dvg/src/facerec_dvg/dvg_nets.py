"""DVG (NeurIPS 2019) VAE networks, written from the spec of BradyFU/DVG ``networks/generator.py``.

One encoder per modality gives (mu, logvar); one decoder renders the NIR image in channels 0:3 and
the VIS image in channels 3:6 from cat(z_nir, z_vis). Key names match the original state dicts.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from facerec.api import unwrap_state_dict
from torch import Tensor, nn

from .sizing import scale as _scale, stages as _stages

ENC_RES = (64, 128, 256, 512)  # residual stages before the last 512 block (128x128 input)
DEC_RES = (512, 512, 512, 256, 128)  # residual stages each followed by x2 nearest upsampling


class _Original(nn.Module):
    """Original checkpoints pickle whole modules; a state dict (``module.`` prefixed) is accepted."""

    @classmethod
    def convert_checkpoint(cls, checkpoint) -> dict[str, Tensor]:
        return unwrap_state_dict(checkpoint, key="state_dict")


def _norm(x: Tensor) -> Tensor:
    return F.instance_norm(x, eps=1e-3)  # eps 1e-3, no affine, as the original


class ResidualBlock(nn.Module):
    """out = LReLU(IN(conv2(LReLU(IN(conv1(x)))) + identity)); 1x1 expansion only if channels change."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        if cin != cout:  # the original tests `inc is not outc`; the state dict is authoritative
            self.conv_expand = nn.Conv2d(cin, cout, 1, bias=False)
        else:
            self.conv_expand = None
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        identity = self.conv_expand(x) if self.conv_expand is not None else x
        out = F.leaky_relu(_norm(self.conv1(x)), 0.2)
        return F.leaky_relu(_norm(self.conv2(out) + identity), 0.2)


class _Norm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _norm(x)


class VAEEncoder(_Original):
    """Image (RGB [0,1]) -> (mu, logvar), each ``hdim`` wide."""

    def __init__(self, hdim: int = 128, image_size: int = 128, width: float = 1.0):
        super().__init__()
        n = _stages(image_size)
        c0 = _scale(32, width)
        res = [_scale(c, width) for c in ENC_RES[: n - 1]] + [_scale(512, width)]
        layers: list[nn.Module] = [nn.Conv2d(3, c0, 5, 1, 2, bias=False), _Norm(), nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
        cin = c0
        for i, c in enumerate(res):
            layers.append(nn.Sequential(ResidualBlock(cin, c)))
            if i < len(res) - 1:
                layers.append(nn.AvgPool2d(2))
            cin = c
        self.main = nn.Sequential(*layers)
        self.fc = nn.Linear(cin * 16, 2 * hdim)
        self.hdim = hdim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.fc(self.main(x).flatten(1)).split(self.hdim, dim=-1)
        return mu, logvar


class VAEDecoder(_Original):
    """cat(z_nir, z_vis) (``hdim`` = 2x the encoder's) -> [B, 6, H, W]: NIR in 0:3, VIS in 3:6."""

    def __init__(self, hdim: int = 256, image_size: int = 128, width: float = 1.0):
        super().__init__()
        n = _stages(image_size)
        chans = [_scale(c, width) for c in DEC_RES[5 - n :]]
        self.c0 = _scale(512, width)
        self.fc = nn.Sequential(nn.Linear(hdim, self.c0 * 16), nn.ReLU(True))
        layers: list[nn.Module] = []
        cin = self.c0
        for c in chans:
            layers += [nn.Sequential(ResidualBlock(cin, c)), nn.Upsample(scale_factor=2, mode="nearest")]
            cin = c
        c = _scale(64, width)
        layers += [nn.Sequential(ResidualBlock(cin, c), ResidualBlock(c, c)), nn.Conv2d(c, 6, 5, 1, 2)]
        self.main = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.main(self.fc(z).view(len(z), self.c0, 4, 4)))
