"""5-point face alignment: batched similarity transforms (Umeyama least squares) to named templates,
warped with ``grid_sample``.

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner (as seen
in the image), pixel coordinates ``(x, y)`` with pixel centres at integers (OpenCV's convention, which
insightface's ``norm_crop`` uses).

Templates (output size in pixels, 5 points):

* ``arcface112``: insightface's 112x112 template (the 96x112 one shifted by 8 px in x).
* ``lightcnn144``: 144x144 for LightCNN/DVG (centre crop 128 for the network). The papers publish no
  coordinates; ours place the ArcFace layout, scaled to 128, inside the central 128 crop.
* ``dcr120``: 120x120 for DCR; the ArcFace layout scaled to 120 (DCR ships pre-aligned crops).
* ``vggface2``: 256x256 loose crop for VGGFace2 (resize 256, centre crop 224): the ArcFace layout scaled
  to 224/1.3, centred, mimicking its 1.3x enlarged detector box.

A template can be rendered at another size: its points scale with the output side. Templates are
components of kind ``template`` (entry-point group ``facerec.templates``): core registers the four above
in its pyproject.toml and plugins add theirs the same way; :func:`get_template` resolves any of them.
:func:`template_warp` plans the one similarity warp that takes images aligned to one template into
another (how data aligned for one model serves a model trained on another crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def _points(value: Any) -> np.ndarray:
    pts = np.array(value, dtype=np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise DataError(f"a template needs 5 finite (x, y) points, got an array of shape {pts.shape}")
    return pts


def _positive_size(instance: Any, attribute: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DataError(f"template size must be a positive int, got {value!r}")


@attrs.frozen
class Template:
    """Reference landmark positions for an output image of ``size`` x ``size`` pixels.

    ``points`` are the 5 landmarks in facerec's order (see the module doc), pixel centres at integers.
    Plugins register their own through the ``facerec.templates`` entry-point group (the target is a
    Template). ``origin`` says where the coordinates come from (``facerun plugins`` shows it).
    """

    name: str
    size: int = attrs.field(validator=_positive_size)
    points: np.ndarray = attrs.field(eq=False, converter=_points)
    origin: str = ""

    def at(self, size: int | None) -> np.ndarray:
        """The points for an output of ``size`` pixels (scaled about the origin, pixel centres kept)."""
        if size is None or size == self.size:
            return self.points
        s = size / self.size
        return (self.points + 0.5) * s - 0.5


def _scaled(points: np.ndarray, scale: float, offset: float) -> np.ndarray:
    # scale about pixel centres: (p + 0.5) * s - 0.5, then shift
    return (points + 0.5) * scale - 0.5 + offset


def _centred(points: np.ndarray, scale: float, size: int) -> np.ndarray:
    c = (112 - 1) / 2.0
    return (points - c) * scale + (size - 1) / 2.0


# core's built-ins, registered in core/pyproject.toml like any plugin's templates
ARCFACE112 = Template(
    "arcface112", 112, ARCFACE_112, origin="insightface's 112x112 ArcFace template (the 96x112 one shifted 8 px in x)"
)
LIGHTCNN144 = Template(
    "lightcnn144",
    144,
    _scaled(ARCFACE_112, 128 / 112, 8.0),
    origin="LightCNN/DVG 144x144 (ArcFace layout scaled to the central 128 crop)",
)
DCR120 = Template(
    "dcr120", 120, _scaled(ARCFACE_112, 120 / 112, 0.0), origin="DCR 120x120 (ArcFace layout scaled to 120)"
)
VGGFACE2 = Template(
    "vggface2",
    256,
    _centred(ARCFACE_112, 224 / 112 / 1.3, 256),
    origin="VGGFace2 loose 256x256 crop (resize 256, centre crop 224; 1.3x detector box)",
)

#: Core's built-in templates (``templates()`` / ``get_template`` also see every plugin's).
TEMPLATES: dict[str, Template] = {t.name: t for t in (ARCFACE112, LIGHTCNN144, DCR120, VGGFACE2)}


def _registered_names() -> list[str]:
    from ..registry import components

    return sorted({c.name for c in components("template")})


def get_template(name: str | Template) -> Template:
    """The template registered as ``name`` (entry-point group ``facerec.templates``), or ``name`` itself."""
    if isinstance(name, Template):
        return name
    from ..errors import FacerecError
    from ..registry import load

    if not isinstance(name, str) or not name:
        raise DataError(f"an alignment template is named by a non-empty string, got {name!r}")
    try:
        obj = load("template", name)
    except FacerecError as exc:
        known = _registered_names()
        if name.rpartition(":")[2] in known:  # registered, but broken or ambiguous: say that
            raise DataError(f"alignment template {name!r}: {exc}") from None
        raise DataError(
            f"unknown alignment template {name!r}; known: {', '.join(known) or 'none'} "
            "(plugins add templates through the facerec.templates entry points)"
        ) from None
    if not isinstance(obj, Template):
        raise DataError(f"alignment template {name!r} is registered as {type(obj).__name__}, not a Template")
    short = name.rpartition(":")[2]
    return obj if obj.name == short else attrs.evolve(obj, name=short)


def templates() -> dict[str, Template]:
    """Every registered template by name (imports the modules that define them)."""
    return {n: get_template(n) for n in _registered_names()}


def similarity_transform(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` -> ``dst``.

    ``src`` [B, N, 2] or [N, 2], ``dst`` [N, 2] or [B, N, 2]; returns [B, 2, 3] (Umeyama 1991, batched).
    """
    src = torch.as_tensor(src, dtype=torch.float64)
    dst = torch.as_tensor(dst, dtype=torch.float64)
    if src.dim() == 2:
        src = src[None]
    if dst.dim() == 2:
        dst = dst[None].expand(src.shape[0], -1, -1)
    if src.shape[-1] != 2 or src.shape[-2] < 2 or src.shape != dst.shape:
        raise DataError(
            f"landmarks must be [B, N, 2] matching the template, got {tuple(src.shape)} "
            f"for a template of {tuple(dst.shape[1:])}"
        )
    n = src.shape[1]
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum((1, 2)) / n
    cov = xd.transpose(1, 2) @ xs / n  # [B, 2, 2]
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones(src.shape[0], 2, dtype=torch.float64)
    d[:, 1] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    d[d == 0] = 1.0
    rot = u @ torch.diag_embed(d) @ vh
    scale = (sig * d).sum(1) / var_s.clamp_min(1e-12)
    t = mu_d[:, 0] - scale[:, None] * (rot @ mu_s[:, 0, :, None])[..., 0]
    return torch.cat([scale[:, None, None] * rot, t[..., None]], dim=2)


def _pixel_to_norm(size_hw: tuple[int, int]) -> Tensor:
    """3x3 map from pixel coords (centres at integers) to grid_sample coords (align_corners=False)."""
    h, w = size_hw
    return torch.tensor(
        [[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )


def warp_affine(images: Tensor, matrices: Tensor, size: int | tuple[int, int], *, mode: str = "bilinear") -> Tensor:
    """Warp ``images`` [B, C, H, W] with pixel-space matrices [B, 2, 3] (input -> output, like
    ``cv2.warpAffine``) to ``size``; outside pixels are 0."""
    out_hw = (size, size) if isinstance(size, int) else (size[0], size[1])
    b = images.shape[0]
    m = torch.zeros(b, 3, 3, dtype=torch.float64)
    m[:, :2] = matrices.double()
    m[:, 2, 2] = 1.0
    inv = torch.linalg.inv(m)  # output pixel -> input pixel
    theta = _pixel_to_norm((images.shape[-2], images.shape[-1])) @ inv @ torch.linalg.inv(_pixel_to_norm(out_hw))
    grid = F.affine_grid(
        theta[:, :2].to(images.dtype if images.is_floating_point() else torch.float32),
        [b, images.shape[1], *out_hw],
        align_corners=False,
    )
    x = images if images.is_floating_point() else images.float()
    out = F.grid_sample(x, grid.to(x.device), mode=mode, padding_mode="zeros", align_corners=False)
    return out


def estimate(landmarks, template: str | Template = "arcface112", size: int | None = None) -> Tensor:
    """Similarity matrices [B, 2, 3] taking each face's 5 landmarks to the template."""
    tpl = get_template(template)
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64)).reshape(-1, 5, 2)
    if not torch.isfinite(lm).all():
        raise DataError(f"{int((~torch.isfinite(lm)).any(-1).any(-1).sum())} face(s) have non-finite landmarks")
    return similarity_transform(lm, torch.as_tensor(tpl.at(size)))


def align(images: Tensor, landmarks, template: str | Template = "arcface112", size: int | None = None) -> Tensor:
    """Align a batch of same-sized canonical images [B, 3, H, W] to a template; returns
    [B, 3, S, S] with S = ``size`` or the template's own size."""
    tpl = get_template(template)
    out = size or tpl.size
    m = estimate(landmarks, tpl, out)
    if m.shape[0] != images.shape[0]:
        raise DataError(f"{images.shape[0]} images but {m.shape[0]} landmark sets")
    return warp_affine(images, m, out).clamp_(0.0, 1.0)


def align_list(
    images: Sequence[Tensor], landmarks, template: str | Template = "arcface112", size: int | None = None
) -> Tensor:
    """Align images of different sizes ([3, H, W] each): transforms estimated in one batch, warped
    per image (grid_sample needs one input size per call)."""
    tpl = get_template(template)
    out = size or tpl.size
    m = estimate(landmarks, tpl, out)
    if m.shape[0] != len(images):
        raise DataError(f"{len(images)} images but {m.shape[0]} landmark sets")
    if not len(images):
        return torch.empty(0, 3, out, out)
    return torch.cat([warp_affine(img[None], m[i : i + 1], out) for i, img in enumerate(images)]).clamp_(0.0, 1.0)


# ------------------------------------------------------------------------------------- template to template


@attrs.frozen
class TemplateWarp:
    """One similarity warp taking images aligned to ``source`` (loaded at ``load_size``) to ``target``
    rendered at ``out_size``; outside the source image the output is 0 (black)."""

    source: Template
    target: Template
    load_size: int
    out_size: int
    matrix: Tensor = attrs.field(eq=False)  # [2, 3] float64, source pixels -> target pixels

    @property
    def scale(self) -> float:
        return float(torch.linalg.det(self.matrix[:, :2]).abs().sqrt())

    def __call__(self, images: Tensor) -> Tensor:
        """Warp a batch ``[B, C, load_size, load_size]`` to ``[B, C, out_size, out_size]``."""
        if tuple(images.shape[-2:]) != (self.load_size, self.load_size):
            raise DataError(
                f"images of {tuple(images.shape[-2:])} px reached a warp planned for "
                f"{self.load_size}x{self.load_size} ({self.source.name} -> {self.target.name})"
            )
        m = self.matrix.to(images.device)[None].expand(images.shape[0], 2, 3)
        return warp_affine(images, m, self.out_size).clamp_(0.0, 1.0)

    def describe(self) -> str:
        return (
            f"images aligned to {self.source.name} ({self.load_size} px) are warped to {self.target.name} "
            f"({self.out_size} px): one similarity transform between the two templates' points, "
            f"scale {self.scale:.3f}, zero fill outside"
        )


def template_warp(
    source: str | Template, target: str | Template, out_size: int | None = None, load_size: int | None = None
) -> TemplateWarp | None:
    """The warp from images aligned to ``source`` to ``target`` at ``out_size`` (default: the
    target's size), or None where the two templates agree at that size (a resize is exact then).

    ``load_size`` (default: chosen here) is the side the images are decoded at: the source's own
    size when the warp enlarges, smaller when it shrinks, so that decoding's antialiased resize does
    the shrinking and the warp itself never shrinks by more than rounding.
    """
    src, dst = get_template(source), get_template(target)
    out = int(out_size or dst.size)
    to = torch.as_tensor(dst.at(out))
    if np.allclose(src.at(out), dst.at(out), atol=1e-6):
        return None
    if load_size is None:
        native = similarity_transform(torch.as_tensor(src.points), to)[0]
        s = float(torch.linalg.det(native[:, :2]).abs().sqrt())
        load_size = src.size if s >= 1.0 else max(8, round(src.size * s))
    m = similarity_transform(torch.as_tensor(src.at(load_size)), to)[0]
    return TemplateWarp(src, dst, int(load_size), out, m)


__all__ = [
    "Template",
    "TemplateWarp",
    "get_template",
    "templates",
    "template_warp",
    "similarity_transform",
    "warp_affine",
    "estimate",
    "align",
    "align_list",
]
