"""Per-identity and per-sample parameters of the synthetic renderer, drawn from counter-based hashes.

Identity parameters depend only on (seed, identity): face outline, eyes, brows, nose, mouth, ears,
skin/hair/iris colours, hair style, beard, moles and an identity-specific skin texture. Sample
parameters depend on (seed, identity, sample): pose, expression, illumination, occlusions (glasses,
mask), background clutter, blur and noise. Every value is a ``[B]`` (or ``[B, k]``) float tensor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor

from . import rng

ID_FIELDS = (
    "head_w",
    "head_top",
    "head_bot",
    "head_vc",
    "jaw_p",
    "eye_x",
    "eye_v",
    "eye_w",
    "eye_h",
    "eye_tilt",
    "iris_r",
    "iris_col",
    "brow_gap",
    "brow_t",
    "brow_arch",
    "brow_len",
    "brow_slope",
    "nose_len",
    "nose_w",
    "nose_bump",
    "mouth_gap",
    "mouth_w",
    "lip_up",
    "lip_lo",
    "lip_tone",
    "skin_tone",
    "skin_hue",
    "hair_col",
    "hair_jit",
    "hair_vol",
    "hair_len",
    "hairline",
    "hair_recede",
    "fringe",
    "bald",
    "ear_v",
    "ear_size",
    "ear_out",
    "beard",
    "beard_kind",
    "freckles",
    "blush",
    "chin_w",
    "cheek",
)
SAMPLE_FIELDS = (
    "yaw_mode",
    "yaw_small",
    "yaw_big",
    "pitch",
    "roll",
    "scale",
    "tx",
    "ty",
    "smile",
    "mouth_open",
    "eye_open",
    "blink",
    "brow_raise",
    "gaze",
    "light_az",
    "light_el",
    "light_str",
    "ambient",
    "exposure",
    "wb_r",
    "wb_b",
    "glasses",
    "glasses_kind",
    "glasses_col",
    "mask",
    "mask_col",
    "bg_kind",
    "bg_angle",
    "blur",
    "blur_s",
    "noise",
    "noise_s",
    "cloth",
    "hair_swing",
    "shape_kind",
    "tile",
    "hat",
    "hair_vj",
)


class Params(dict[str, Tensor]):
    """name -> tensor, readable as attributes."""

    if TYPE_CHECKING:  # what the renderer relies on: every attribute, read or set, is a tensor

        def __getattr__(self, name: str) -> Tensor: ...
        def __setattr__(self, name: str, value: Tensor) -> None: ...
    else:
        __getattr__ = dict.__getitem__


def _lerp(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * u


@attrs.frozen
class Nuisance:
    """How hard the per-sample variation is. The defaults are the tuned difficulty of the synthetic
    protocols; tests and generators may make images easier (e.g. ``max_yaw=30``) or harder."""

    max_yaw: float = 90.0  # degrees; profile views reach this
    profile_prob: float = 0.1  # share of samples drawn uniformly up to max_yaw (others near frontal)
    frontal_yaw_std: float = 12.0
    pitch_std: float = 8.0
    roll_std: float = 9.0
    glasses_prob: float = 0.12
    mask_prob: float = 0.06
    blur_prob: float = 0.3
    noise_max: float = 0.03
    clutter: float = 1.0
    color_jitter: float = 1.6  # scales exposure / white-balance variation
    translate: float = 0.2  # max shift of the face centre (fraction of half the image)
    hat_prob: float = 0.12


#: Named difficulties datasets and protocols take as ``nuisance="<name>"``. ``controlled``: aligned,
#: near-frontal faces on plain indoor backgrounds, as in CASIA NIR-VIS 2.0 or Multi-PIE captures (no
#: profiles, masks or hats, little clutter, blur or shift).
NUISANCE_PRESETS: dict[str, Nuisance] = {
    "default": Nuisance(),
    "controlled": Nuisance(
        max_yaw=30.0,
        profile_prob=0.0,
        frontal_yaw_std=8.0,
        pitch_std=5.0,
        roll_std=4.0,
        mask_prob=0.0,
        blur_prob=0.1,
        noise_max=0.02,
        clutter=0.3,
        color_jitter=0.8,
        translate=0.05,
        hat_prob=0.0,
    ),
}


def resolve_nuisance(value: "Nuisance | str | dict | None", owner: str = "nuisance") -> Nuisance:
    """A :class:`Nuisance` from a preset name, a dict of its fields, an instance, or None (the default)."""
    from ...errors import ParameterError

    if value is None:
        return Nuisance()
    if isinstance(value, Nuisance):
        return value
    if isinstance(value, str):
        if value not in NUISANCE_PRESETS:
            raise ParameterError(f"{owner}: unknown nuisance preset {value!r}; presets: {', '.join(NUISANCE_PRESETS)}")
        return NUISANCE_PRESETS[value]
    if isinstance(value, dict):
        try:
            return Nuisance(**value)
        except TypeError:
            known = ", ".join(f.name for f in attrs.fields(Nuisance))
            raise ParameterError(f"{owner}: nuisance keys must be among {known}; got {sorted(value)}") from None
    raise ParameterError(f"{owner}: nuisance must be a preset name or a dict, got {type(value).__name__}")


# Colour palettes (linear-ish RGB in [0, 1]).
_SKIN_DARK = torch.tensor([0.30, 0.19, 0.13])
_SKIN_LIGHT = torch.tensor([0.93, 0.78, 0.68])
# Hair colours with the frequencies of a mixed population: mostly dark, so colour alone says little.
_HAIR = torch.tensor(
    [
        [0.05, 0.045, 0.04],
        [0.07, 0.05, 0.04],
        [0.12, 0.08, 0.05],
        [0.17, 0.10, 0.06],
        [0.26, 0.17, 0.10],
        [0.38, 0.24, 0.13],
        [0.70, 0.56, 0.34],
        [0.50, 0.22, 0.09],
        [0.55, 0.53, 0.51],
    ]
)
_IRIS = torch.tensor(
    [
        [0.16, 0.09, 0.05],
        [0.33, 0.19, 0.08],
        [0.40, 0.36, 0.16],
        [0.25, 0.42, 0.25],
        [0.25, 0.40, 0.62],
        [0.45, 0.50, 0.55],
    ]
)


def _palette(table: Tensor, u: Tensor, jitter: Tensor) -> Tensor:
    idx = (u * len(table)).long().clamp(max=len(table) - 1)
    return (table[idx] * (0.9 + 0.2 * jitter[:, None])).clamp(0, 1)


def identity_params(seed: int, identities: Tensor) -> Params:
    """Stable appearance of each identity: ``[B]`` tensors named by ``ID_FIELDS`` plus colours/moles."""
    keys = rng.item_keys(seed, identities, None, salt=1)
    u = rng.uniform(keys, len(ID_FIELDS), stream=0)
    r = Params({name: u[:, i] for i, name in enumerate(ID_FIELDS)})
    p = Params()
    p.head_w = _lerp(r.head_w, 0.60, 0.76)
    p.head_top = _lerp(r.head_top, 0.98, 1.16)
    p.head_bot = _lerp(r.head_bot, 0.96, 1.14)
    p.head_vc = _lerp(r.head_vc, -0.14, -0.02)
    p.jaw_p = _lerp(r.jaw_p, 1.6, 3.4)
    p.chin_w = _lerp(r.chin_w, 0.0, 1.0)
    p.eye_x = _lerp(r.eye_x, 0.24, 0.39)
    p.eye_v = _lerp(r.eye_v, -0.18, -0.02)
    p.eye_w = _lerp(r.eye_w, 0.09, 0.14)
    p.eye_h = _lerp(r.eye_h, 0.034, 0.062)
    p.eye_tilt = _lerp(r.eye_tilt, -0.28, 0.28)
    p.iris_r = _lerp(r.iris_r, 0.33, 0.48) * p.eye_w
    p.brow_gap = _lerp(r.brow_gap, 0.07, 0.15)
    p.brow_t = _lerp(r.brow_t, 0.016, 0.055)
    p.brow_arch = _lerp(r.brow_arch, -0.015, 0.055)
    p.brow_len = _lerp(r.brow_len, 0.09, 0.16)
    p.brow_slope = _lerp(r.brow_slope, -0.3, 0.3)
    p.nose_len = _lerp(r.nose_len, 0.16, 0.36)
    p.nose_w = _lerp(r.nose_w, 0.055, 0.12)
    p.nose_bump = _lerp(r.nose_bump, 0.35, 1.0)
    p.mouth_gap = _lerp(r.mouth_gap, 0.15, 0.30)
    p.mouth_w = _lerp(r.mouth_w, 0.12, 0.29)
    p.lip_up = _lerp(r.lip_up, 0.012, 0.04)
    p.lip_lo = _lerp(r.lip_lo, 0.018, 0.05)
    p.ear_v = _lerp(r.ear_v, -0.05, 0.12)
    p.ear_size = _lerp(r.ear_size, 0.12, 0.2)
    p.ear_out = _lerp(r.ear_out, 0.2, 0.9)
    p.cheek = _lerp(r.cheek, 0.0, 1.0)
    # Skin: a tone line from dark to light plus a red/yellow hue shift.
    tone = (0.25 + 0.55 * r.skin_tone)[:, None]
    skin = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * tone
    hue = (r.skin_hue - 0.5)[:, None] * torch.tensor([0.06, 0.0, -0.06])
    p.skin = (skin + hue * skin).clamp(0, 1)
    p.skin_tone = tone[:, 0]
    p.lips = (p.skin * torch.tensor([0.78, 0.50, 0.52]) * (0.8 + 0.35 * r.lip_tone[:, None])).clamp(0, 1)
    p.hair = _palette(_HAIR, r.hair_col, r.hair_jit)
    p.iris = _palette(_IRIS, r.iris_col, r.lip_tone)
    p.hair_vol = _lerp(r.hair_vol, 0.02, 0.28)
    p.hair_len = r.hair_len
    p.hairline = _lerp(r.hairline, -0.92, -0.5)
    p.hair_recede = _lerp(r.hair_recede, 0.0, 0.3)
    p.fringe = (r.fringe < 0.22).float() * _lerp(r.hair_jit, 0.2, 0.42)
    p.bald = (r.bald < 0.08).float()
    p.beard = (r.beard < 0.22).float() * _lerp(r.beard_kind, 0.35, 1.0)
    p.beard_kind = r.beard_kind
    p.freckles = (r.freckles < 0.18).float()
    p.blush = r.blush
    # Moles: up to 6 per identity at fixed face positions.
    m = rng.uniform(keys, 24, stream=1).view(-1, 6, 4)
    p.mole_x = _lerp(m[..., 0], -0.55, 0.55)
    p.mole_v = _lerp(m[..., 1], -0.6, 0.75)
    p.mole_r = _lerp(m[..., 2], 0.015, 0.04) * (m[..., 3] < 0.5).float()
    # Identity-specific fine texture: three oriented sinusoids and a freckle lattice.
    t = rng.uniform(keys, 12, stream=2).view(-1, 3, 4)
    ang = t[..., 0] * math.pi
    freq = _lerp(t[..., 1], 14.0, 34.0)
    p.tex_kx = freq * torch.cos(ang)
    p.tex_kv = freq * torch.sin(ang)
    p.tex_ph = t[..., 2] * 2 * math.pi
    p.tex_amp = _lerp(t[..., 3], 0.008, 0.03)
    return p


def sample_params(
    seed: int, identities: Tensor, samples: Tensor, nuisance: Nuisance, yaw: Tensor | None = None
) -> Params:
    """Per-sample nuisance: pose (degrees), expression, light, occlusions, background, blur, noise."""
    keys = rng.item_keys(seed, identities, samples, salt=2)
    u = rng.uniform(keys, len(SAMPLE_FIELDS), stream=0)
    g = rng.normal(keys, 8, stream=1)
    r = Params({name: u[:, i] for i, name in enumerate(SAMPLE_FIELDS)})
    s = Params()
    if yaw is None:
        frontal = (g[:, 0] * nuisance.frontal_yaw_std).clamp(-nuisance.max_yaw, nuisance.max_yaw)
        big = (2 * r.yaw_big - 1) * nuisance.max_yaw
        yaw = torch.where(r.yaw_mode < nuisance.profile_prob, big, frontal)
    s.yaw = yaw.float()
    s.pitch = (g[:, 1] * nuisance.pitch_std).clamp(-25, 25)
    s.roll = (g[:, 2] * nuisance.roll_std).clamp(-20, 20)
    s.scale = _lerp(r.scale, 0.82, 1.08)
    s.tx = _lerp(r.tx, -1, 1) * nuisance.translate
    s.ty = _lerp(r.ty, -0.8, 1) * nuisance.translate
    s.smile = _lerp(r.smile, -0.3, 1.0)
    s.mouth_open = (r.mouth_open < 0.3).float() * _lerp(r.gaze, 0.005, 0.05)
    s.eye_open = torch.where(r.blink < 0.05, torch.full_like(r.eye_open, 0.12), _lerp(r.eye_open, 0.6, 1.1))
    s.brow_raise = _lerp(r.brow_raise, -0.015, 0.03)
    s.gaze = _lerp(r.gaze, -0.3, 0.3)
    s.light_az = _lerp(r.light_az, -1.2, 1.2)
    s.light_el = _lerp(r.light_el, -0.5, 0.8)
    s.light_str = _lerp(r.light_str, 0.35, 0.95)
    s.ambient = _lerp(r.ambient, 0.25, 0.6)
    s.exposure = 1 + nuisance.color_jitter * _lerp(r.exposure, -0.35, 0.35)
    cj = nuisance.color_jitter
    s.wb = torch.stack(
        [1 + cj * _lerp(r.wb_r, -0.2, 0.2), torch.ones_like(r.wb_r), 1 + cj * _lerp(r.wb_b, -0.2, 0.2)], 1
    )
    s.glasses = (r.glasses < nuisance.glasses_prob).float()
    s.glasses_kind = r.glasses_kind
    s.glasses_col = r.glasses_col
    s.mask = (r.mask < nuisance.mask_prob).float()
    s.mask_col = r.mask_col
    s.bg_kind = r.bg_kind
    s.bg_angle = r.bg_angle * 2 * math.pi
    s.blur = (r.blur < nuisance.blur_prob).float() * _lerp(r.blur_s, 0.4, 1.6)
    s.noise = r.noise * nuisance.noise_max
    s.cloth = r.cloth
    s.hair_swing = _lerp(r.hair_swing, -0.06, 0.06)
    s.shape_kind = r.shape_kind
    s.tile = r.tile
    s.hat = (r.hat < nuisance.hat_prob).float()
    s.hair_vj = _lerp(r.hair_vj, -0.08, 0.08)
    s.item_keys = keys
    s.clutter = torch.full_like(r.tile, nuisance.clutter)
    s.colors = rng.uniform(keys, 18, stream=2).view(-1, 6, 3)  # background / clutter / clothing colours
    s.shapes = rng.uniform(keys, 16, stream=3).view(-1, 4, 4)  # clutter shapes: x, y, size, kind
    return s
