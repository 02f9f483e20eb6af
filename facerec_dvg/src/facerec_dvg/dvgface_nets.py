"""DVG-Face networks: attribute encoders, the AdaIN decoder and the identity sampler.

Written from the spec of BradyFU/DVG-Face ``network/G_net.py`` / ``ID_net.py``; key names match the
original state dicts. Unlike the original, AdaIN parameters are an explicit per-sample argument of
the decoder instead of attributes assigned before each call, so one decoder call can render NIR and
VIS samples with different styles (the original needs one call per style and modality).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from facerec.api import unwrap_state_dict
from torch import Tensor, nn

from .sizing import scale as _scale, stages as _stages

#: Channels of the released 128x128 architecture; smaller images drop leading stages.
ENC_CHANNELS = (32, 64, 128, 256, 256, 256)
DEC_CHANNELS = (128, 128, 64, 64, 32)
NUM_ADAIN = 7  # conv.8.norm ... conv.12.norm


class _Original(nn.Module):
    """Original checkpoints: ``{'epoch', 'state_dict'}`` with DataParallel ``module.`` prefixes."""

    @classmethod
    def convert_checkpoint(cls, checkpoint) -> dict[str, Tensor]:
        return unwrap_state_dict(checkpoint)


class ConvBlock(nn.Module):
    """conv (with bias) -> norm -> LeakyReLU(0.2); norm is 'in' (no affine, eps 1e-5) or 'adain'."""

    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, norm: str = "in", transpose: bool = False):
        super().__init__()
        self.conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, k, s, p)
        self.adain = norm == "adain"
        if self.adain:
            self.norm = AdaIN(cout)

    def forward(self, x: Tensor, styles: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        x = self.conv(x)
        if self.adain:
            assert styles is not None
            x = self.norm(x, *styles.pop(0))
        else:
            x = F.instance_norm(x, eps=1e-5)
        return F.leaky_relu(x, 0.2)


class ResBlock(nn.Module):
    """x + block(block(x)); the activation lives inside each block, none after the add."""

    def __init__(self, channels: int, norm: str = "in"):
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3, 1, 1, norm)
        self.conv2 = ConvBlock(channels, channels, 3, 1, 1, norm)

    def forward(self, x: Tensor, styles: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        return x + self.conv2(self.conv1(x, styles), styles)


class AdaIN(nn.Module):
    """Per-sample instance norm (biased variance, eps 1e-5) with per-sample affine from a style code.

    The running_mean / running_var buffers exist only so that original decoder checkpoints load
    strictly; as in the original they never influence the output.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.instance_norm(x, eps=1e-5) * weight[:, :, None, None] + bias[:, :, None, None]


class Encoder(_Original):
    """Image (RGB [0,1]) -> unit-norm attribute code z ('enc'); z -> AdaIN style vector ('style')."""

    def __init__(self, image_size: int = 128, width: float = 1.0, code_dim: int = 256, num_adain_params: int = 448):
        super().__init__()
        n = _stages(image_size)
        chans = [_scale(c, width) for c in ENC_CHANNELS[: n + 1]]
        layers = [ConvBlock(3, chans[0], 5, 1, 2)]
        layers += [ConvBlock(chans[i], chans[i + 1], 3, 2, 1) for i in range(n)]
        self.conv = nn.Sequential(*layers)
        self.fc_enc = nn.Linear(chans[-1] * 16, code_dim)
        self.fc_style = nn.Sequential(
            nn.Linear(code_dim, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 2048),
            nn.LeakyReLU(0.2),
            nn.Linear(2048, num_adain_params),
        )

    def encode(self, x: Tensor) -> Tensor:
        return F.normalize(self.fc_enc(self.conv(x).flatten(1)), dim=1)

    def style(self, z: Tensor) -> Tensor:
        return self.fc_style(F.normalize(z, dim=1))

    def forward(self, x: Tensor, mode: str = "enc") -> Tensor:
        return self.encode(x) if mode == "enc" else self.style(x)


class Decoder(_Original):
    """cat([identity, z]) + per-sample style -> NIR and/or VIS image (sigmoid, RGB [0,1]).

    ``modality`` is "nir", "vis" or a per-sample bool tensor (True = NIR) choosing the 1x1 output head.
    """

    def __init__(self, image_size: int = 128, width: float = 1.0, input_dim: int = 512):
        super().__init__()
        n = _stages(image_size)
        chans = [_scale(c, width) for c in DEC_CHANNELS[5 - n :]]
        c_in = _scale(128, width)
        self.c_in = c_in
        self.fc = nn.Sequential(nn.Linear(input_dim, c_in * 16), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        for c in chans[:-1]:  # plain stages: deconv IN + resblock IN
            layers += [ConvBlock(c_in, c, 2, 2, 0, "in", transpose=True), ResBlock(c)]
            c_in = c
        c = chans[-1]  # last stage: everything AdaIN-modulated
        layers += [
            ConvBlock(c_in, c, 2, 2, 0, "adain", transpose=True),
            ResBlock(c, "adain"),
            ConvBlock(c, c, 3, 1, 1, "adain"),
            ResBlock(c, "adain"),
            ConvBlock(c, c, 3, 1, 1, "adain"),
        ]
        self.conv = nn.ModuleList(layers)
        self.nir_output = nn.Conv2d(c, 3, 1)
        self.vis_output = nn.Conv2d(c, 3, 1)
        self.adain_channels = c

    @property
    def num_adain_params(self) -> int:
        return 2 * self.adain_channels * NUM_ADAIN

    def split_style(self, style: Tensor) -> list[tuple[Tensor, Tensor]]:
        """MUNIT layout: per AdaIN layer, style[:, :C] is the bias and style[:, C:2C] the weight."""
        c = self.adain_channels
        out = []
        for j in range(NUM_ADAIN):
            block = style[:, 2 * c * j : 2 * c * (j + 1)]
            out.append((block[:, c:], block[:, :c]))  # (weight, bias)
        return out

    def forward(self, h: Tensor, style: Tensor, modality: str | Tensor) -> Tensor:
        styles = self.split_style(style)
        x = self.fc(h).view(len(h), self.c_in, 4, 4)
        for layer in self.conv:
            x = layer(x, styles)
        if isinstance(modality, str):
            head = self.nir_output if modality == "nir" else self.vis_output
            return torch.sigmoid(head(x))
        # Both 1x1 heads are cheap; pick one per sample.
        out = torch.where(modality.view(-1, 1, 1, 1), self.nir_output(x), self.vis_output(x))
        return torch.sigmoid(out)


class IdentitySampler(_Original):
    """Noise N(0, I) -> unit-norm identity feature (DVG-Face ``dec``): a 4-layer MLP."""

    def __init__(self, noise_dim: int = 256, identity_dim: int = 256):
        super().__init__()
        self.noise_dim = noise_dim
        self.fc = nn.Sequential(
            nn.Linear(noise_dim, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, identity_dim),
        )

    def forward(self, noise: Tensor) -> Tensor:
        return F.normalize(self.fc(noise), dim=1)


class IdentityEncoder(_Original):
    """The encoder half of the identity VAE (not released upstream): feature -> (mu, logvar)."""

    def __init__(self, identity_dim: int = 256, noise_dim: int = 256):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(identity_dim, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 2 * noise_dim),
        )

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.fc(feature).chunk(2, dim=1)
        return mu, logvar
