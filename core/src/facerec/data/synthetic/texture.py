"""The face "texture": albedo and a nose bump channel laid out in face coordinates, one map per item.

Texel coordinates are (a, v): ``a`` in [-1, 1] is the longitude on the head divided by 90 degrees
(a = +-1 at the ears) and ``v`` the height in head units (y down). Features are drawn with
signed distances in the frontal projection ``X = sin(a * pi / 2) * W(v)`` so a frontal render shows
them undistorted, and the scene module wraps the map around the head for any yaw. Everything is
``[B, TH, TW]`` tensor arithmetic: no loops over pixels or items.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .params import Params

V_RANGE = 1.3  # texture rows cover v in [-V_RANGE, V_RANGE]


def _c(x: Tensor) -> Tensor:
    """[B] -> [B, 1, 1] for broadcasting against [B, H, W] maps."""
    return x.view(-1, 1, 1)


def _col(x: Tensor) -> Tensor:
    """[B, 3] colour -> [B, 3, 1, 1]."""
    return x.view(-1, 3, 1, 1)


def fill(d: Tensor, px: float | Tensor) -> Tensor:
    """Anti-aliased coverage of the region d < 0 (d a signed distance, px the pixel size)."""
    return (0.5 - d / px).clamp_(0.0, 1.0)


def paint(img: Tensor, alpha: Tensor, color: Tensor) -> Tensor:
    """Composite ``color`` ([B,3] or [B,3,H,W]) over ``img`` [B,3,H,W] with coverage ``alpha`` [B,H,W]."""
    if color.dim() == 2:
        color = _col(color)
    return img.lerp_(color.expand_as(img), alpha.unsqueeze(1))  # one fused in-place pass


def head_width(p: Params, v: Tensor) -> Tensor:
    """Half width of the head outline at height ``v`` ([B, ...]): a superellipse, squarer jaw for large p."""
    t = v - _c(p.head_vc)
    lower = t > 0
    h = torch.where(lower, _c(p.head_bot), _c(p.head_top))
    e = torch.where(lower, _c(p.jaw_p), torch.full_like(t, 2.3))
    q = (t.abs() / h).clamp(0.0, 1.0)
    return _c(p.head_w) * (1.0 - q.pow(e)).clamp_min(0.0).pow(1.0 / e)


def lum(c: Tensor) -> Tensor:
    return c @ torch.tensor([0.299, 0.587, 0.114], dtype=c.dtype)


def palette(p: Params, nir: Tensor) -> Params:
    """Per-item colours: VIS from the identity palette; NIR with active-IR reflectances (skin bright and
    nearly tone-independent, dark hair and irises lighter, lips close to skin)."""
    n = nir.view(-1, 1)
    grey = lambda g: g.view(-1, 1).expand(-1, 3)  # noqa: E731
    skin_n = 0.66 + 0.12 * p.skin_tone
    c = Params()
    c.skin = torch.where(n, grey(skin_n), p.skin)
    c.lips = torch.where(n, grey(skin_n * 0.88), p.lips)
    c.hair = torch.where(n, grey(0.2 + 0.6 * lum(p.hair)), p.hair)
    c.brow = c.hair * 0.55
    c.iris = torch.where(n, grey(0.42 + 0.5 * lum(p.iris)), p.iris)
    c.sclera = torch.where(n, grey(torch.full_like(skin_n, 0.72)), torch.tensor([0.86, 0.84, 0.80]).expand_as(p.skin))
    c.mole_k = torch.where(nir, 0.3, 0.7)
    c.vis = (~nir).float()
    return c


def _window(th: int, tw: int, v0: float, v1: float, amax: float) -> tuple[slice, slice]:
    """Rows covering v in [v0, v1] and columns covering |a| <= amax (fixed for every item): each feature is
    drawn only inside the window that can contain it for any identity, which keeps the cost per item low."""
    r0 = max(0, int((v0 / V_RANGE + 1) / 2 * th) - 1)
    r1 = min(th, int(math.ceil((v1 / V_RANGE + 1) / 2 * th)) + 1)
    c0 = max(0, int((1 - amax) / 2 * tw) - 1)
    return slice(r0, r1), slice(c0, tw - c0)


def render_texture(p: Params, s: Params, nir: Tensor, th: int, tw: int) -> Tensor:
    """Albedo (3 channels) + nose bump (1 channel) maps ``[B, 4, th, tw]``."""
    b = p.head_w.shape[0]
    px = 2.0 / tw * 0.9
    a_full = torch.linspace(-1 + 1 / tw, 1 - 1 / tw, tw).view(1, 1, tw)
    v = torch.linspace(-V_RANGE * (1 - 1 / th), V_RANGE * (1 - 1 / th), th).view(1, th, 1).expand(b, th, 1)
    w = head_width(p, v)  # [B, th, 1]
    X_full = torch.sin(a_full * (math.pi / 2)) * w  # [B, th, tw]
    V_full = v.expand(b, th, tw)
    c = palette(p, nir)
    out = torch.empty(b, 4, th, tw)
    out[:, :3] = _col(c.skin)
    out[:, 3] = 0

    # Identity skin texture: oriented sinusoids (weaker in NIR), cheek blush (VIS only), freckles, moles.
    rows, cols = _window(th, tw, -1.0, 1.15, 1.0)
    alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
    aX = X.abs()
    tex = torch.zeros_like(X)
    for j in range(3):
        tex += _c(p.tex_amp[:, j]) * torch.sin(_c(p.tex_kx[:, j]) * X + _c(p.tex_kv[:, j]) * V + _c(p.tex_ph[:, j]))
    tex *= _c(torch.where(nir, 0.5, 1.0))
    cheek = torch.exp(-((aX - _c(p.eye_x + 0.04)) ** 2 + (V - _c(p.eye_v + 0.2)) ** 2) / 0.012)
    fr = (torch.sin(71 * X + _c(p.tex_ph[:, 0])) * torch.sin(67 * V + _c(p.tex_ph[:, 1])) - 0.55).clamp_min_(0)
    k = 1 + tex - _c(p.freckles * c.vis) * 1.3 * fr * (cheek + 0.3)
    for m in range(p.mole_r.shape[1]):
        d = torch.sqrt((X - _c(p.mole_x[:, m])) ** 2 + (V - _c(p.mole_v[:, m])) ** 2) - _c(p.mole_r[:, m])
        k *= 1 - _c(c.mole_k) * fill(d, px)
    alb *= k.unsqueeze(1)
    alb += (_c(p.blush * c.vis * 0.18) * cheek).unsqueeze(1) * torch.tensor([0.5, -0.25, -0.2]).view(1, 3, 1, 1) * alb

    ev = _c(p.eye_v)
    nv = ev + _c(p.nose_len)
    mv = nv + _c(p.mouth_gap)

    # Lower face: beard / moustache (identity) under the lips, then the mouth.
    rows, cols = _window(th, tw, 0.1, 1.2, 1.0)
    alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
    aX = X.abs()
    if bool((p.beard > 0).any()):
        goatee = torch.sqrt((X / (_c(p.mouth_w) * 1.15)) ** 2 + ((V - mv - 0.08) / 0.17) ** 2) - 1
        full = mv - 0.04 - 0.3 * (X / _c(p.head_w)) ** 2 - V
        beard_jaw = fill(torch.where(_c(p.beard_kind) < 0.6, goatee * 0.1, full), 0.04)
        beard_mou = fill(nv + 0.025 - V, px) * fill(V - (mv - 0.01), px) * fill(aX - _c(p.mouth_w) * 1.1, px)
        stub = 0.75 + 0.25 * torch.sin(150 * X + 40 * V) * torch.sin(130 * V - 50 * X)
        paint(alb, _c(p.beard) * torch.maximum(beard_jaw, beard_mou) * stub, c.hair)
    # Mouth: lips around a seam curved by the smile; open mouths show a dark interior.
    mw = _c(p.mouth_w) * (1 + 0.12 * _c(s.smile))
    qm = (X / mw) ** 2
    inner = (1 - qm).clamp_min(0)
    seam = mv - _c(s.smile) * 0.05 * qm + _c(s.smile) * 0.012
    gap = _c(s.mouth_open) * inner
    dyu = V - seam + gap
    dyl = V - seam - gap
    upper = fill(-dyu - _c(p.lip_up) * inner.sqrt(), px) * fill(dyu, px)
    lower = fill(dyl - _c(p.lip_lo) * inner.sqrt(), px) * fill(-dyl, px)
    paint(alb, torch.maximum(upper, lower), c.lips)
    hole = fill(-dyl, px) * fill(dyu, px) * (gap > 0.002).float()
    paint(alb, hole, torch.full_like(c.skin, 0.06))
    paint(alb, fill((V - seam).abs() - 0.004, px) * fill(qm - 1, 0.1) * 0.7, c.lips * 0.35)

    # Nose: a bump channel (shading does the rest), nostrils and the shadow under the tip.
    rows, cols = _window(th, tw, -0.2, 0.45, 0.5)
    alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
    aX = X.abs()
    nw = _c(p.nose_w)
    ramp = ((V - ev) / _c(p.nose_len)).clamp(0, 1)
    wn = nw * (0.45 + 0.55 * ramp)
    bump = _c(p.nose_bump) * (X / wn) * torch.exp(-((X / wn) ** 2)) * ramp * fill(V - nv - 0.02, 0.03)
    tip = torch.exp(-(X**2 + (V - nv + 0.015) ** 2) / (nw * nw * 0.35))
    out[:, 3, rows, cols] = bump + _c(p.nose_bump) * 1.2 * (X / nw) * tip
    nost = torch.sqrt(((aX - nw * 0.48) / (nw * 0.24)) ** 2 + ((V - nv - 0.008) / (nw * 0.13)) ** 2) - 1
    paint(alb, fill(nost * nw * 0.13, px) * 0.85, c.skin * 0.15)
    shade = torch.exp(-(((V - nv - 0.04) / 0.02) ** 2) - (X / (nw * 1.2)) ** 2)
    alb *= (1 - 0.3 * shade).unsqueeze(1)

    # Mask over nose and mouth (per sample).
    if bool((s.mask > 0).any()):
        rows, cols = _window(th, tw, -0.1, 1.3, 1.0)
        alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
        top = nv - 0.07 + 0.05 * (X / _c(p.head_w)) ** 2
        mask = _c(s.mask) * fill(top - V, px) * fill(a_full[..., cols].abs() - 0.88, px)
        mcol = torch.stack([0.55 + 0.4 * s.mask_col, 0.75 + 0.2 * s.mask_col, 0.95 - 0.1 * s.mask_col], 1)
        mcol = torch.where(s.mask_col.view(-1, 1) < 0.3, torch.full_like(mcol, 0.12), mcol)
        mcol = torch.where(nir.view(-1, 1), lum(mcol).view(-1, 1).expand(-1, 3), mcol)
        paint(alb, mask, _col(mcol) * (0.92 + 0.08 * torch.sin(V * 95)).unsqueeze(1))

    # Eyes: socket shadow, almond sclera, iris, pupil, upper lid line; then brows and glasses.
    rows, cols = _window(th, tw, -0.5, 0.15, 0.85)
    alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
    aX = X.abs()
    ct, st = torch.cos(_c(p.eye_tilt)), torch.sin(_c(p.eye_tilt))
    dx0, dy0 = aX - _c(p.eye_x), V - ev
    dx, dy = dx0 * ct - dy0 * st, dx0 * st + dy0 * ct
    ew, eh = _c(p.eye_w), _c(p.eye_h) * _c(s.eye_open)
    sock = torch.exp(-((dx / (1.5 * ew)) ** 2 + ((dy + 0.012) / (eh + 0.05)) ** 2))
    alb *= (1 - 0.22 * sock).unsqueeze(1)
    q = (dx / ew) ** 2
    h = eh * (1 - q).clamp_min(0)
    eye = fill(dy.abs() - h, px) * fill(dx.abs() - ew, px)
    paint(alb, eye, c.sclera)
    gx = dx - _c(s.gaze) * ew * 0.45 * torch.sign(X)
    r = torch.sqrt(gx * gx + dy * dy)
    paint(alb, eye * fill(r - _c(p.iris_r), px), c.iris)
    paint(alb, eye * fill(r - _c(p.iris_r) * 0.42, px), torch.full_like(c.skin, 0.03))
    lid = fill((dy + h).abs() - 0.006, px) * fill(dx.abs() - ew * 1.05, px)
    paint(alb, lid, c.hair * 0.3)
    # Brows (raised by expression).
    bx = aX - _c(p.eye_x + 0.015)
    by = V - (ev - _c(p.brow_gap + s.brow_raise))
    bl = _c(p.brow_len)
    qb = (bx / bl) ** 2
    yc = -_c(p.brow_arch) * (1 - qb) + _c(p.brow_slope) * 0.25 * bx
    brow = fill((by - yc).abs() - _c(p.brow_t) * (1 - 0.55 * qb), px) * fill(bx.abs() - bl, px)
    paint(alb, brow, c.brow)

    # Hair on the head: hairline with receding temples and optional fringe, sideburns to the ears.
    rows, cols = _window(th, tw, -1.3, 0.1, 1.0)
    alb, V = out[:, :3, rows, cols], V_full[:, rows, cols]
    a = a_full[..., cols]
    hl = _c(p.hairline) - _c(p.hair_recede) * torch.exp(-(((a.abs() - 0.4) / 0.25) ** 2)) + _c(p.fringe)
    side = ((a.abs() - 0.72) / 0.25).clamp(0, 1)
    hl = hl + side * (_c(p.ear_v) - 0.12 - hl).clamp_min(0)
    strands = 0.85 + 0.15 * torch.sin(90 * a + 7 * V + _c(p.tex_ph[:, 2]))
    hair = fill(V - hl, 0.03) * (1 - _c(p.bald))
    paint(alb, hair, _col(c.hair) * strands.unsqueeze(1))

    # Glasses (per sample) on top of everything.
    if bool((s.glasses > 0).any()):
        rows, cols = _window(th, tw, -0.5, 0.15, 1.0)
        alb, X, V = out[:, :3, rows, cols], X_full[:, rows, cols], V_full[:, rows, cols]
        aX = X.abs()
        dx0, dy0 = aX - _c(p.eye_x), V - ev
        rx, ry = ew * 1.45 + 0.025, ew * 1.05 + 0.02
        ex = 2.0 + 2.0 * (_c(s.glasses_kind) > 0.5).float()
        gd = ((dx0.abs() / rx) ** ex + ((dy0 + 0.005).abs() / ry) ** ex) ** (1 / ex) - 1
        lens = _c(s.glasses) * fill(gd * ry, px)
        dark = _c((s.glasses_col > 0.75).float())
        alb *= (1 - lens * (0.08 + 0.8 * dark)).unsqueeze(1)
        t_frame = 0.006 + 0.008 * _c(s.glasses_col)
        rim = fill((gd * ry).abs() - t_frame, px)
        bridge = fill(aX - (_c(p.eye_x) - rx + 0.01), px) * fill((dy0 + 0.02).abs() - t_frame, px)
        arms = fill(_c(p.eye_x) + rx - 0.01 - aX, px) * fill((dy0 + 0.01).abs() - t_frame, px)
        frame = _c(s.glasses) * torch.maximum(rim, torch.maximum(bridge, arms))
        fcol = torch.full_like(c.skin, 0.05) + 0.5 * s.glasses_col.view(-1, 1) * torch.tensor([0.6, 0.3, 0.1])
        paint(alb, frame, fcol)
    return out
