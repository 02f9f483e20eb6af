"""What a backbone expects as input (:class:`InputSpec`), checked field by field on construction."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from torch import Tensor

Color = Literal["RGB", "BGR", "GRAY"]


COLORS = ("RGB", "BGR", "GRAY")


def _spec_error(message: str) -> Exception:
    from ..errors import ParameterError

    return ParameterError(f"InputSpec: {message}")


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _spec_error(f"expected a number or a sequence of numbers, got {value!r}") from None
    return out


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
        if int(h) != h or int(w) != w:
            raise ValueError
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise _spec_error(f"size must be an int or (height, width) ints, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise _spec_error(f"size must be positive, got {(h, w)}")
    return (h, w)


def _check_spec(spec: InputSpec) -> None:
    """Every field on its own, then how they fit together (mean/std length against the channels)."""
    import math

    if spec.color not in COLORS:
        raise _spec_error(f"color must be exactly one of {', '.join(COLORS)}, got {spec.color!r}")
    if not (isinstance(spec.scale, (int, float)) and math.isfinite(spec.scale) and spec.scale > 0):
        raise _spec_error(f"scale must be a positive number, got {spec.scale!r}")
    for name, values in (("mean", spec.mean), ("std", spec.std)):
        if len(values) not in {1, spec.channels}:
            takes = "1" if spec.channels == 1 else f"1 or {spec.channels}"
            raise _spec_error(f"{name} has {len(values)} values; a {spec.color} input takes {takes}")
        if not all(math.isfinite(v) for v in values):
            raise _spec_error(f"{name} must be finite, got {values}")
    if not all(v > 0 for v in spec.std):
        raise _spec_error(f"std must be positive, got {spec.std}")
    if spec.resize is not None:
        if isinstance(spec.resize, bool) or not isinstance(spec.resize, int) or spec.resize < max(spec.size):
            raise _spec_error(
                f"resize (the shorter side before the centre crop) must be an int >= the input size "
                f"{max(spec.size)}, got {spec.resize!r}"
            )
    if not isinstance(spec.template, str) or not spec.template.strip():
        raise _spec_error(f"template must name a registered alignment template, got {spec.template!r}")


@attrs.frozen
class InputSpec:
    """What a backbone expects: ``x = (resize_crop(to_color(img01)) * scale - mean) / std``.

    ``img01`` is the canonical image (RGB, values in [0, 1]). ``size`` is the network input (H, W).
    ``color`` is exactly ``"RGB"``, ``"BGR"`` (channels reversed) or ``"GRAY"`` (one channel, ITU-R 601
    luma). ``scale`` multiplies first (255 for networks trained on 0-255 pixels); ``mean`` and ``std``
    hold 1 value or one per channel, in the network's channel order; ``std`` is positive. ``resize``
    optionally resizes the shorter side first and then centre-crops ``size`` (VGGFace2: 256 then 224;
    LightCNN: 144 then 128). ``template`` names the registered 5-point alignment template the weights
    were trained with (``facerec.data.align``); data aligned to another template is warped to it.
    Every field is checked on construction; the template's name is resolved at first use
    (:meth:`alignment`), since plugins that register templates may load later.
    """

    size: tuple[int, int] = attrs.field(converter=_size)
    color: Color = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = attrs.field(default=(0.0,), converter=_floats)
    std: tuple[float, ...] = attrs.field(default=(1.0,), converter=_floats)
    resize: int | None = None
    template: str = "arcface112"

    def __attrs_post_init__(self) -> None:
        _check_spec(self)

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @property
    def canonical_size(self) -> int:
        """Side of the square canonical image data should be rendered/loaded at for this model."""
        return self.resize if self.resize is not None else max(self.size)

    def alignment(self):  # -> facerec.data.align.Template
        """The registered template named by ``template`` (one-line error naming the known ones)."""
        from ..data.align import get_template

        return get_template(self.template)

    def prepare(self, images: Tensor) -> Tensor:
        """Canonical images ``[B, 3, H, W]`` RGB in [0, 1] -> network input, batched, on any device."""
        import torch.nn.functional as F

        x = images.float()
        if x.shape[1] == 1 and self.color != "GRAY":
            x = x.expand(-1, 3, -1, -1)
        h, w = self.size
        if self.resize is not None:
            short = min(x.shape[-2:])
            if short != self.resize:
                scale = self.resize / short
                new = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
                x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            x = x[..., top : top + h, left : left + w]
        elif tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if self.color == "GRAY":
            if x.shape[1] == 3:
                weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                x = (x * weights).sum(1, keepdim=True)
        elif self.color == "BGR":
            x = x.flip(1)
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x * self.scale - mean) / std
