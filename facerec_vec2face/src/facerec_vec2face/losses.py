"""Vec2Face training losses: reconstruction, LPIPS (VGG16), SSIM, token, identity and GAN terms.

``nll = MSE + lpips_weight*LPIPS + ssim_weight*(1-SSIM) + token + id`` (current original weights:
0.2 and 0.1), ``g = -mean(D(x_hat))`` from ``disc_start`` on, LSGAN discriminator loss.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.errors import WeightsError

# ---------------------------------------------------------------------------------------- SSIM


def _gauss(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM over the batch (pytorch_msssim conventions: separable Gaussian, valid padding)."""
    c = x.shape[1]
    win = min(win_size, x.shape[-1], x.shape[-2]) | 1
    g = _gauss(win, sigma, x.device, x.dtype)
    wh, ww = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wh, groups=c), ww, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs).mean()


# ---------------------------------------------------------------------------------------- LPIPS


class LPIPS(nn.Module):
    """LPIPS-VGG16: channel-normalised features of relu1_2..relu5_3, 1x1 ``lin`` weights, spatial mean.

    Needs torchvision's VGG16 ImageNet weights (``vgg_weights``) and the LPIPS lin layers
    (``lin_weights``: the original ``lpips/vgg.pth``); nothing is downloaded. The normalisation eps is
    the Vec2Face one (``clamp(min=1e-4)``).
    """

    CHANNELS = (64, 128, 256, 512, 512)
    SLICES = (4, 9, 16, 23, 30)

    def __init__(self, vgg_weights: str | Path, lin_weights: str | Path):
        super().__init__()
        from torchvision.models import vgg16

        from facerec.weights import read_checkpoint

        vgg = vgg16()
        try:
            vgg.load_state_dict(read_checkpoint(vgg_weights), strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{vgg_weights}: not torchvision VGG16 weights ({str(exc).splitlines()[0]})") from None
        feats = vgg.features
        bounds = (0, *self.SLICES)
        self.slices = nn.ModuleList(nn.Sequential(*[feats[i] for i in range(a, b)]) for a, b in zip(bounds, bounds[1:]))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        lin = read_checkpoint(lin_weights)
        try:
            for i, conv in enumerate(self.lins):
                conv.weight.data.copy_(lin[f"lin{i}.model.1.weight"])
        except KeyError as exc:
            raise WeightsError(f"{lin_weights}: missing LPIPS key {exc.args[0]!r}") from None
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Images in [-1, 1] -> per-sample distance [B]."""
        a, b = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        for block, lin in zip(self.slices, self.lins):
            a, b = block(a), block(b)
            na = a / a.norm(dim=1, keepdim=True).clamp(min=1e-4)
            nb = b / b.norm(dim=1, keepdim=True).clamp(min=1e-4)
            total = total + lin((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total


# ---------------------------------------------------------------------------------------- total


@attrs.frozen
class LossWeights:
    lpips: float = 0.2
    ssim: float = 0.1
    token: float = 1.0
    identity: float = 1.0
    gan: float = 1.0


def generator_losses(
    real: Tensor,
    fake: Tensor,
    logits: Tensor,
    gt_tokens: Tensor,
    *,
    weights: LossWeights,
    features: Tensor | None,
    identity: nn.Module | None,
    lpips: LPIPS | None,
    disc_logits_fake: Tensor | None,
    gan_on: bool,
) -> dict[str, Tensor]:
    """All generator-side terms (images in [-1, 1]); returns the parts and ``nll``/``ae``."""
    out: dict[str, Tensor] = {"rec": F.mse_loss(fake, real)}
    nll = out["rec"]
    if lpips is not None and weights.lpips:
        out["lpips"] = lpips(fake.float(), real.float()).mean()
        nll = nll + weights.lpips * out["lpips"]
    if weights.ssim:
        out["ssim"] = 1 - ssim((fake.float() + 1) / 2, (real.float() + 1) / 2)
        nll = nll + weights.ssim * out["ssim"]
    out["token"] = F.mse_loss(logits[:, 1:], gt_tokens[:, 1:])
    nll = nll + weights.token * out["token"]
    if identity is not None and features is not None and weights.identity:
        out["id"] = (1 - F.cosine_similarity(features.float(), identity(fake).float(), dim=1)).mean()
        nll = nll + weights.identity * out["id"]
    out["nll"] = nll
    ae = nll
    if disc_logits_fake is not None and gan_on:
        out["g"] = -disc_logits_fake.mean()
        ae = ae + weights.gan * out["g"]
    out["ae"] = ae
    return out


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """LSGAN: 0.5 * (mean((D(x)-1)^2) + mean(D(x_hat)^2))."""
    return 0.5 * (((logits_real - 1) ** 2).mean() + (logits_fake**2).mean())
