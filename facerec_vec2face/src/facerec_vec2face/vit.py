"""The Vec2Face network (``MaskedGenerativeEncoderViT``) in the released checkpoint's layout.

A 512-D identity vector becomes a token sequence, part of which is masked/dropped, encoded by a
ViT, decoded back to 1 + grid^2 tokens and turned into pixels by :class:`PixelDecoder`. Masking is
reproducible: draw it from a ``torch.Generator``, fix the rate, or pass the noise that picks the
positions. Attention uses SDPA (the same math as the original max-subtracted softmax).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pixel_decoder import PixelDecoder


@attrs.frozen
class MaskConfig:
    """Truncated-normal masking rate (one per forward), as ``mask_ratio_{min,max,mu,std}``."""

    min: float = 0.1
    max: float = 1.0
    mu: float = 0.15
    std: float = 0.25

    def sample_rates(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` inverse-CDF draws from truncnorm((min-mu)/std, (max-mu)/std, loc=mu, scale=std)."""
        bounds = torch.tensor([(self.min - self.mu) / self.std, (self.max - self.mu) / self.std], dtype=torch.float64)
        lo, hi = torch.special.ndtr(bounds)
        u = torch.rand(count, generator=generator, dtype=torch.float64)
        p = (lo + u * (hi - lo)).clamp(1e-12, 1 - 1e-12)
        return (self.mu + self.std * torch.special.ndtri(p)).clamp(self.min, self.max)

    def sample_rate(self, generator: torch.Generator | None = None) -> float:
        return float(self.sample_rates(1, generator)[0])


#: Generation-script masking (image_generation.py) and the training default (vec2face.py).
GENERATION_MASK = MaskConfig(0.1, 1.0, 0.15, 0.25)
TRAINING_MASK = MaskConfig(0.5, 1.0, 0.75, 0.25)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.1, proj_drop: float = 0.1):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN transformer block (LayerNorm eps 1e-6). The original forces fp32 here under AMP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenEmbedding(nn.Module):
    """BERT-style: + learned positions, LayerNorm, dropout. ``position_ids`` is a saved buffer."""

    def __init__(self, length: int, dim: int, drop: float = 0.1):
        super().__init__()
        self.position_embeddings = nn.Embedding(length, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(drop)
        self.register_buffer("position_ids", torch.arange(length).unsqueeze(0), persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.position_embeddings(self.position_ids[:, : x.shape[1]])
        return self.dropout(self.LayerNorm(x))


class PatchEmbed(nn.Module):
    """Unused by forward but part of the released state dict (timm PatchEmbed)."""

    def __init__(self, img_size: int, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2


class Vec2FaceOutput(NamedTuple):
    gt_tokens: Tensor  # (B, 1+L, D) target tokens, before masking, detached
    logits: Tensor  # (B, 1+L, D) decoder_norm output
    image: Tensor  # (B, 3, H, W) in [-1, 1] space, not clamped
    token_all_mask: Tensor  # (B, 1+L) float, 1 where masked or dropped


@attrs.frozen
class NetConfig:
    """Architecture of one Vec2Face network (base/large/huge as released, tiny for CPU runs)."""

    img_size: int = 112
    patch_size: int = 16
    rep_dim: int = 512
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 768
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    drop: float = 0.1
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = attrs.field(default=(1, 1, 2, 2, 4), converter=tuple)
    num_res_blocks: int = 2
    norm_groups: int = 32

    def __attrs_post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if 2 ** (len(self.ch_mult) - 1) != self.patch_size:
            raise ValueError(
                f"the pixel decoder upsamples by 2^{len(self.ch_mult) - 1}, "
                f"which must equal patch_size {self.patch_size}"
            )


CONFIGS: dict[str, NetConfig] = {
    "base": NetConfig(),
    "large": NetConfig(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=1024),
    "huge": NetConfig(embed_dim=1280, depth=32, num_heads=16, decoder_embed_dim=1280),
    # CPU tests and the quick demo: 32x32 faces, 16 tokens, a few hundred thousand parameters.
    "tiny": NetConfig(
        img_size=32,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=4,
        decoder_embed_dim=64,
        decoder_depth=2,
        decoder_num_heads=4,
        z_channels=32,
        ch=16,
        ch_mult=(1, 1, 2, 2),
        num_res_blocks=1,
        norm_groups=8,
    ),
}


class Vec2FaceNet(nn.Module):
    """Identity vector (B, rep_dim), raw scale -> :class:`Vec2FaceOutput`. Original key names."""

    def __init__(self, config: NetConfig = CONFIGS["base"], mask: MaskConfig = GENERATION_MASK):
        super().__init__()
        c = self.config = config
        self.mask = mask
        self.grid = c.img_size // c.patch_size
        self.num_tokens = self.grid**2
        n = self.num_tokens
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.embed_dim)
        self.token_emb = TokenEmbedding(n + 1, c.embed_dim, c.drop)
        self.latent_prior_proj_f = nn.Linear(c.rep_dim, c.embed_dim)
        self.feature_token = nn.Linear(1, n)
        self.center_token = nn.Linear(c.embed_dim, n)  # unused, kept for the checkpoint layout
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.drop) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, n + 1, c.decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio, c.drop) for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=1e-6)
        self.im_decoder_proj = nn.Linear(c.decoder_embed_dim, c.z_channels)
        self.im_decoder = PixelDecoder(c.ch, c.ch_mult, c.num_res_blocks, c.z_channels, 3, c.norm_groups)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.token_emb.position_embeddings.weight, std=0.02)
        nn.init.normal_(self.decoder_pos_embed_learned, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- masking -------------------------------------------------------------------------------
    def draw_masks(
        self,
        batch: int,
        *,
        device: torch.device,
        rate: float | Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(drop, all_masked) boolean masks [B, L]: the ``ceil(L*min)`` / ``ceil(L*rate)`` lowest noise.

        ``rate`` is one value for the batch (the original) or one per sample ([B] tensor).
        """
        n = self.num_tokens
        if rate is None:
            rate = self.mask.sample_rate(generator)
        if noise is None:
            noise = torch.rand(batch, n, generator=generator)
        noise = noise.to(device)
        num_drop = math.ceil(n * self.mask.min)
        rates = torch.as_tensor(rate, dtype=torch.float64).reshape(-1).expand(batch)
        num_mask = torch.ceil(rates * n).long().clamp(min=max(num_drop, 1), max=n).to(device)
        sorted_noise = noise.sort(dim=1).values
        masked = noise <= sorted_noise.gather(1, (num_mask - 1).unsqueeze(1))
        if num_drop > 0:
            drop = noise <= sorted_noise[:, num_drop - 1 : num_drop]
            if int(drop.sum()) != batch * num_drop:
                raise RuntimeError("tied mask noise; pass distinct noise values")  # the original re-draws
        else:
            drop = torch.zeros_like(masked)
        return drop, masked

    def draw_rates(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` independent mask rates (per-sample masking)."""
        return self.mask.sample_rates(count, generator)

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        rep: Tensor,
        *,
        rate: float | Tensor | None = None,
        noise: Tensor | None = None,
        masks: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Vec2FaceOutput:
        b = rep.shape[0]
        e = self.latent_prior_proj_f(rep)  # (B, D)
        tokens = self.feature_token(e.unsqueeze(-1)).permute(0, 2, 1)  # (B, L, D): w_j*e + b_j
        gt = torch.cat([e.unsqueeze(1), tokens], dim=1).detach()
        if masks is None:
            masks = self.draw_masks(b, device=rep.device, rate=rate, noise=noise, generator=generator)
        drop, masked = masks
        tokens = torch.where(masked.unsqueeze(-1), e.unsqueeze(1), tokens)  # masked -> e itself
        seq = self.token_emb(torch.cat([e.unsqueeze(1), tokens], dim=1))
        lead = drop.new_zeros(b, 1)
        drop = torch.cat([lead, drop], dim=1)
        all_mask = torch.cat([lead, masked], dim=1)
        # Every sample drops the same count, so the kept tokens reshape to a dense batch.
        x = seq[~drop].reshape(b, -1, seq.shape[-1])
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        filled = x[:, :1].expand(b, drop.shape[1], x.shape[-1]).clone()  # mask token = encoded token 0
        filled[~drop] = x.reshape(-1, x.shape[-1])
        filled = torch.where(all_mask.unsqueeze(-1), x[:, :1], filled)
        x = filled + self.decoder_pos_embed_learned
        for blk in self.decoder_blocks:
            x = blk(x)
        logits = self.decoder_norm(x)
        z = self.im_decoder_proj(logits[:, 1:].reshape(b, self.grid, self.grid, -1)).permute(0, 3, 1, 2)
        image = self.im_decoder(z)
        return Vec2FaceOutput(gt, logits, image, all_mask.to(logits.dtype))


def net_config(name: str | NetConfig, **overrides: object) -> NetConfig:
    """A named configuration, optionally with fields overridden."""
    if isinstance(name, NetConfig):
        base = name
    elif name in CONFIGS:
        base = CONFIGS[name]
    else:
        raise ValueError(f"unknown Vec2Face config {name!r}; choose one of {', '.join(CONFIGS)}")
    return attrs.evolve(base, **overrides) if overrides else base
