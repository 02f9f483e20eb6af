"""Procedural synthetic faces: the embedded default data of facerec, rendered on the fly.

``render(identities, samples, seed=0, size=112, modality="VIS")`` draws canonical images
``[B, 3, size, size]`` (float RGB in [0, 1]) deterministically from (seed, identity, sample index):
the same triple always gives the same image, whatever batch it is rendered in. Identity fixes the
face outline, eyes, brows, nose, mouth, ears, skin tone, hair style and colour, beard, moles and a
fine skin texture; the sample index draws pose (yaw up to profile, pitch, roll), expression,
illumination, glasses/mask occlusion, background clutter, blur and noise. NIR renders use active
near-infrared reflectances and frontal light and come out as three identical channels.
``nuisance`` (a :class:`Nuisance`, or a preset name such as ``"controlled"`` in datasets and protocols)
sets how hard that per-sample variation is. ``degrade(images, pixels)`` makes DCR-style low-resolution
versions (8/12/16/20 px, back to size).
"""

from __future__ import annotations

from .degrade import degrade
from .params import NUISANCE_PRESETS, Nuisance, identity_params, resolve_nuisance, sample_params
from .renderer import draw_yaw, render

__all__ = [
    "NUISANCE_PRESETS",
    "Nuisance",
    "degrade",
    "draw_yaw",
    "identity_params",
    "render",
    "resolve_nuisance",
    "sample_params",
]
