"""Image-space rendering: pose, head outline, wrapped face texture, shading, hair, ears, neck,
clothes, cluttered background, blur and noise. All batched tensor arithmetic over [B, H, W]."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from . import rng
from .params import Nuisance, Params, identity_params, sample_params
from .texture import V_RANGE, _c, _col, fill, head_width, lum, paint, palette, render_texture


@lru_cache(maxsize=8)
def _noise_bank(size: int) -> Tensor:
    """A fixed bank of 16 noise tiles per size; items pick a tile and a shift by their hash, so noise is
    deterministic per item whatever the batch."""
    g = torch.Generator().manual_seed(20240611 + size)
    return torch.randn(16, 3, size, size, generator=g)


def _gauss_blur(img: Tensor, sigma_px: Tensor) -> Tensor:
    """Per-item Gaussian blur (sigma in pixels, 0 = none) as one grouped separable convolution."""
    b, ch, h, w = img.shape
    if not bool((sigma_px > 0).any()):
        return img
    r = int(math.ceil(2.5 * float(sigma_px.max())))
    t = torch.arange(-r, r + 1, dtype=img.dtype)
    s = sigma_px.clamp_min(1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = torch.where(sigma_px.view(-1, 1) > 0, k, (t.view(1, -1) == 0).to(img.dtype))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # [B*ch, K]
    x = F.pad(img.reshape(1, b * ch, h, w), (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(b * ch, 1, 1, -1), groups=b * ch)
    x = F.conv2d(x, k.view(b * ch, 1, -1, 1), groups=b * ch)
    return x.view(b, ch, h, w)


def _background(s: Params, nir: Tensor, size: int) -> Tensor:
    """Gradient, low-frequency colour field, clutter shapes and clothes, drawn at a quarter of the size and
    upsampled (the soft result reads as an out-of-focus background and costs 1/16 of full resolution)."""
    b = nir.shape[0]
    n = max(16, size // 4)
    lin = torch.linspace(-1 + 1 / n, 1 - 1 / n, n)
    x, y = lin.view(1, 1, n), lin.view(1, n, 1)
    cols = s.colors
    cols = torch.where(nir.view(-1, 1, 1), (lum(cols) * 0.45).unsqueeze(-1).expand_as(cols), cols)
    ang = _c(s.bg_angle)
    t = 0.5 + 0.5 * (x * torch.cos(ang) + y * torch.sin(ang))
    img = _col(cols[:, 0]) + t.unsqueeze(1) * _col(cols[:, 1] - cols[:, 0])
    field = rng.uniform(s.item_keys, 48, stream=4).view(b, 3, 4, 4) - 0.5
    field = torch.where(nir.view(-1, 1, 1, 1), field.mean(1, keepdim=True).expand_as(field), field)
    img += _c(s.clutter).unsqueeze(1) * 0.5 * F.interpolate(field, size=(n, n), mode="bilinear", align_corners=True)
    sh = s.shapes
    for k in range(sh.shape[1]):
        cx, cy = _c(sh[:, k, 0] * 2 - 1), _c(sh[:, k, 1] * 2 - 1)
        rad = _c(0.08 + 0.3 * sh[:, k, 2])
        if k % 2:
            d = torch.maximum((x - cx).abs() - rad, (y - cy).abs() - rad * (0.2 + sh[:, k, 3].view(-1, 1, 1)))
        else:
            d = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) - rad
        paint(img, fill(d, 2.0 / n) * _c(s.clutter * 0.8), cols[:, 2 + (k % 2)])
    cloth = torch.sqrt(((x - _c(s.tx) * 0.5) / 1.25) ** 2 + ((y - 1.62 - _c(s.ty)) / 0.62) ** 2) - 1
    paint(img, fill(cloth * 0.62, 2.0 / n), cols[:, 4] * 0.8)
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


def _roll(img: Tensor, roll_deg: Tensor) -> Tensor:
    """In-plane rotation of whole images (one batched grid_sample; borders replicate)."""
    r = roll_deg * (math.pi / 180)
    cos, sin = torch.cos(r), torch.sin(r)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros_like(r)], 1), torch.stack([sin, cos, torch.zeros_like(r)], 1)], 1
    )
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def render_batch(
    identities: Tensor, samples: Tensor, nir: Tensor, *, seed: int, size: int, yaw: Tensor | None, nuisance: Nuisance
) -> Tensor:
    p = identity_params(seed, identities)
    s = sample_params(seed, identities, samples, nuisance, yaw)
    col = palette(p, nir)
    # Active NIR illumination: frontal and strong, with a darker background.
    s.light_az = torch.where(nir, s.light_az * 0.12, s.light_az)
    s.light_el = torch.where(nir, 0.1 + s.light_el * 0.1, s.light_el)
    s.light_str = torch.where(nir, 0.75 + 0.2 * s.light_str, s.light_str)
    s.ambient = torch.where(nir, 0.3 + 0.1 * s.ambient, s.ambient)

    tsize = max(48, int(round(size * 0.75)))
    tex = render_texture(p, s, nir, tsize, tsize)
    img = _background(s, nir, size)

    # The head is drawn upright (roll is applied to the whole image at the end), so every quantity
    # that depends only on the row or the column stays [B, H, 1] or [B, 1, W].
    lin = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    sc = _c(s.scale)
    xh = (lin.view(1, 1, size) - _c(s.tx)) / sc  # [B, 1, W]
    yh = (lin.view(1, size, 1) - _c(s.ty)) / sc  # [B, H, 1]
    px = 2.0 / size / sc  # pixel size in head units [B, 1, 1]
    yaw_r = _c(s.yaw * (math.pi / 180))
    vc = _c(p.head_vc)

    # Neck and the hair mass behind the head.
    neck = torch.maximum(xh.abs() - _c(p.head_w) * 0.52, vc + 0.2 - yh)
    paint(img, fill(neck, px), col.skin * (_c(s.ambient) * 0.8 + 0.25).view(-1, 1))
    hx = xh + torch.sin(yaw_r) * 0.18 - _c(s.hair_swing)
    vol = (p.hair_vol + s.hair_vj).clamp_min(0)
    rx = _c(p.head_w * (1 + vol) + 0.02)
    ry = _c(p.head_top + vol * 0.7)
    yy = yh - vc
    bottom = _c(p.ear_v) - vc + 0.05 + _c(p.hair_len) ** 2 * 1.4
    d_top = (torch.sqrt((hx / rx) ** 2 + (yy / ry) ** 2) - 1) * rx
    d_low = torch.maximum(hx.abs() - rx, yy - bottom)
    d_hair = torch.where(yy < 0, d_top, d_low)
    hair_shade = _c(s.ambient) + _c(s.light_str) * (0.55 + 0.4 * (hx / rx).clamp(-1, 1) * torch.sin(_c(s.light_az)))
    strands = 0.85 + 0.15 * torch.sin(120 * hx + 11 * yh)
    paint(img, fill(d_hair, px) * (1 - _c(p.bald)), _col(col.hair) * (hair_shade * strands).unsqueeze(1))

    # Ears: drawn behind the head when turned away, in front when facing the camera.
    ears_front = []
    we = head_width(p, _c(p.ear_v))
    long_hair = (_c(p.hair_len) > 0.55).float() * (1 - _c(p.bald))
    for side in (1.0, -1.0):
        pe = side * math.pi / 2 + yaw_r
        cos_e, sin_e = torch.cos(pe), torch.sin(pe)
        xe = sin_e * we + torch.sign(sin_e) * _c(p.ear_out) * 0.06 * (1 - cos_e.abs())
        ew = _c(p.ear_size) * 0.5 * (0.3 + 0.7 * cos_e.abs())
        eh = _c(p.ear_size)
        de = (torch.sqrt(((xh - xe) / ew) ** 2 + ((yh - _c(p.ear_v) - 0.03) / eh) ** 2) - 1) * ew
        alpha = fill(de, px) * ((cos_e > -0.5).float() * (1 - long_hair))
        inner = fill(de + ew * 0.45, px) * cos_e.clamp_min(0)
        light = _c(s.ambient) + _c(s.light_str) * (0.4 + 0.5 * torch.cos(pe - _c(s.light_az)))
        ecol = _col(col.skin) * (light * (1 - 0.35 * inner)).unsqueeze(1)
        front = (cos_e > 0.2).float()
        paint(img, alpha * (1 - front), ecol)
        ears_front.append((alpha * front, ecol))

    # Head outline and longitude on the head (cylindrical wrap of the face texture).
    W = head_width(p, yh)  # [B, H, 1]
    d_head = torch.maximum(xh.abs() - W, torch.maximum(yh - vc - _c(p.head_bot), vc - _c(p.head_top) - yh))
    head = fill(d_head, px)
    sphi = (xh / W.clamp_min(1e-3)).clamp(-1.0, 1.0)
    cphi = torch.sqrt((1 - sphi * sphi).clamp_min(0))
    a = (torch.asin(sphi) - yaw_r) / (math.pi / 2)
    v = yh + torch.sin(_c(s.pitch * (math.pi / 180))) * 0.3 * cphi
    grid = torch.stack([a.clamp(-1, 1), v / V_RANGE], -1)
    face = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
    alb, bump = face[:, :3], face[:, 3]
    # Behind the ears: hair down to the nape (skin when bald or below it).
    nape = _c(p.ear_v) + 0.1 + 0.6 * _c(p.hair_len)
    back_hair = fill(yh - nape, 0.05) * (1 - _c(p.bald))
    back_col = _col(col.skin) + back_hair.unsqueeze(1) * (_col(col.hair) - _col(col.skin))
    front = fill(a.abs() - 1.0, 0.04)
    alb = torch.lerp(back_col.expand_as(alb), alb, front.unsqueeze(1))

    # Lambert shading with the bump channel tilting normals across the nose.
    ty = ((yh - vc) / torch.where(yh > vc, _c(p.head_bot), _c(p.head_top))).clamp(-1, 1) * 0.7
    k = torch.sqrt(1 - ty * ty)
    nx = sphi * k + 0.6 * bump * cphi
    nz = cphi * k - 0.6 * bump * sphi
    az, el = _c(s.light_az), _c(s.light_el)
    lx, ly, lz = torch.sin(az) * torch.cos(el), -torch.sin(el), torch.cos(az) * torch.cos(el)
    diff = ((nx * lx + ty * ly + nz * lz) / torch.sqrt(nx * nx + ty * ty + nz * nz)).clamp_min(0)
    shade = _c(s.ambient) + _c(s.light_str) * diff
    img.lerp_(alb * shade.unsqueeze(1), head.unsqueeze(1))
    for alpha, ecol in ears_front:
        paint(img, alpha, ecol)
    # Hat (per sample): a crown over the top of the head with a brim at the forehead.
    if bool((s.hat > 0).any()):
        hx0 = xh - _c(s.hair_swing) * 0.5
        d_hat = torch.maximum(
            (torch.sqrt((hx0 / (rx + 0.04)) ** 2 + (yy / (ry + 0.06)) ** 2) - 1) * rx,
            yy + _c(p.head_top) * (0.25 + 0.25 * _c(s.cloth)),
        )
        hcol = s.colors[:, 5] * 0.8
        hcol = torch.where(nir.view(-1, 1), lum(hcol).view(-1, 1).expand(-1, 3), hcol)
        paint(img, fill(d_hat, px) * _c(s.hat), _col(hcol) * hair_shade.unsqueeze(1))

    # Camera: roll, exposure and white balance (VIS), grey NIR with illuminator fall-off, blur, noise.
    img = _roll(img, s.roll)
    wb = torch.where(nir.view(-1, 1), torch.ones_like(s.wb), s.wb)
    img *= (s.exposure.view(-1, 1) * wb).view(-1, 3, 1, 1)
    if bool(nir.any()):
        sel = nir.nonzero().view(-1)
        r2 = lin.view(1, -1) ** 2 + lin.view(-1, 1) ** 2
        gray = (img[sel] * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        img[sel] = (gray * (1.1 - 0.35 * r2)).expand(-1, 3, -1, -1)
    blurred = (s.blur > 0).nonzero().view(-1)
    if len(blurred):
        img[blurred] = _gauss_blur(img[blurred], s.blur[blurred] * (size / 112.0))
    bank = _noise_bank(size)
    tile = (s.tile * len(bank)).long().clamp(max=len(bank) - 1)
    noise = bank[tile]
    noise = torch.where(nir.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
    img += s.noise.view(-1, 1, 1, 1) * noise
    return img.clamp_(0.0, 1.0)
