"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``): a 29-convolution ResNet
that maps a 150x150 RGB face chip to a 128-d descriptor (Davis King, dlib 19.3, 2017; 99.38% on LFW).

The architecture is dlib's ``anet_type`` (tools/python/src/face_recognition.cpp,
examples/dnn_face_recognition_ex.cpp), written here from its layer definitions:

* stem: 7x7 conv, 32 filters, stride 2, no padding -> affine -> ReLU -> 3x3 max-pool, stride 2, no padding;
* 14 residual blocks: 3 at 32 channels, then 4 at 64, 3 at 128, 3 at 256 and 1 more at 256, each
  level starting with a down-sampling block. A block is conv3x3 -> affine -> ReLU -> conv3x3 -> affine,
  added to its input, then ReLU. In a down-sampling block the first conv has stride 2 and (dlib's
  default for strided layers) no padding, and the shortcut is a 2x2 average pool with stride 2; dlib's
  ``add_prev`` adds tensors of different shapes by zero-padding the smaller one (channels 32 -> 64,
  and the 3x3 block output onto the 4x4 pooled shortcut at 256 channels);
* mean over the whole image, then a 128-unit fully connected layer without bias.

dlib's ``affine`` layers are batch norms frozen into a per-channel scale and shift; here they are
:class:`ChannelAffine` parameters, which facerec's fast inference path folds into the convolutions.
Every dlib ``con`` layer has a bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Backbone, InputSpec, unwrap_state_dict
from facerec.errors import WeightsError

#: The RGB means dlib's input layer subtracts (0-255 scale); it then divides by 256.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
CHIP_SIZE = 150
PAPER = (
    "D. E. King, dlib-models: dlib_face_recognition_resnet_model_v1 (dlib 19.3, 2017; a ResNet-34 variant "
    "with 29 conv layers trained on ~3M faces of ~7.5k identities; 99.38% on LFW)"
)

#: (in channels, out channels, down-sampling) of the residual blocks, bottom-up.
BLOCKS: tuple[tuple[int, int, bool], ...] = (
    (32, 32, False),
    (32, 32, False),
    (32, 32, False),
    (32, 64, True),
    (64, 64, False),
    (64, 64, False),
    (64, 64, False),
    (64, 128, True),
    (128, 128, False),
    (128, 128, False),
    (128, 256, True),
    (256, 256, False),
    (256, 256, False),
    (256, 256, True),
)


def zero_padded_add(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: the sum over the larger of the two shapes, each input zero outside itself."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def grow(t: Tensor) -> Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


torch.fx.wrap("zero_padded_add")  # one call in traced graphs (the inference path traces the model)


class ChannelAffine(nn.Module):
    """dlib's ``affine`` layer in per-channel mode: ``x * gamma + beta``."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class Residual(nn.Module):
    """dlib's ``ares`` (``down`` False) and ``ares_down`` blocks."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = ChannelAffine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.aff2 = ChannelAffine(cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(zero_padded_add(y, shortcut))


class DlibResNet29(Backbone):
    """dlib's ResNet-29 face descriptor: 150x150 RGB chips (dlib's alignment) -> 128-d embeddings.

    The network of dlib_face_recognition_resnet_model_v1."""

    paper: ClassVar[str] = PAPER
    #: x = (pixel_0_255 - dlib_mean) / 256 on dlib's 150x150 chip (template dlib150, padding 0.25)
    input_spec: ClassVar[InputSpec] = InputSpec(
        size=CHIP_SIZE, color="RGB", scale=255.0, mean=DLIB_MEAN_RGB, std=256.0, template="dlib150"
    )
    embedding_size = 128

    def __init__(self) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2)
        self.stem_affine = ChannelAffine(32)
        self.blocks = nn.Sequential(*(Residual(cin, cout, down) for cin, cout, down in BLOCKS))
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A dlib network as :func:`facerec_dlib.serialization.read_dlib_network` reads it -> this state dict
        (a mapping already in this module's names passes through)."""
        if not any(str(k).startswith("layers.") for k in checkpoint):
            return unwrap_state_dict(checkpoint)
        return _from_dlib(checkpoint)


# ------------------------------------------------------------------------------------------ conversion

_GEOMETRY = {  # kind -> geometry a layer must have: [kh, kw, stride_y, stride_x, pad_y, pad_x]
    "stem": [7, 7, 2, 2, 0, 0],
    "max_pool": [3, 3, 2, 2, 0, 0],
    "down": [3, 3, 2, 2, 0, 0],
    "same": [3, 3, 1, 1, 1, 1],
    "shortcut": [2, 2, 2, 2, 0, 0],
    "global": [0, 0, 1, 1, 0, 0],
}


def _plan() -> list[tuple[str, str | None, str | None]]:
    """dlib's computational layers bottom-up: (kind, our module, geometry key)."""
    plan = [
        ("con", "stem_conv", "stem"),
        ("affine", "stem_affine", None),
        ("relu", None, None),
        ("max_pool", None, "max_pool"),
    ]
    for i, (_, _, down) in enumerate(BLOCKS):
        b = f"blocks.{i}"
        plan += [
            ("con", f"{b}.conv1", "down" if down else "same"),
            ("affine", f"{b}.aff1", None),
            ("relu", None, None),
            ("con", f"{b}.conv2", "same"),
            ("affine", f"{b}.aff2", None),
        ]
        if down:
            plan.append(("avg_pool", None, "shortcut"))
        plan += [("add_prev", None, None), ("relu", None, None)]
    return plan + [("avg_pool", None, "global"), ("fc", "fc", None)]


def _layers(checkpoint: Mapping[str, Any]) -> list[tuple[str, dict[str, Tensor]]]:
    found: dict[int, tuple[str, dict[str, Tensor]]] = {}
    for key, value in checkpoint.items():
        parts = str(key).split(".")
        if parts[0] != "layers" or len(parts) != 4:
            continue
        kind, fields = found.setdefault(int(parts[1]), (parts[2], {}))
        fields[parts[3]] = torch.as_tensor(value)
    return [found[i] for i in sorted(found)]


def _affine(kind: str, f: dict[str, Tensor], where: str) -> tuple[Tensor, Tensor]:
    """gamma, beta of an affine layer; a batch-norm layer is frozen the way dlib freezes it."""
    if kind == "bn_con":
        g = f["gamma"].double() / torch.sqrt(f["running_var"].double() + float(f["eps"]))
        return g.float(), (f["beta"].double() - g * f["running_mean"].double()).float()
    if int(f.get("mode", torch.tensor(0))) != 0 or "disabled" in f:
        raise WeightsError(f"{where}: an affine layer that is not per-channel (or is disabled)")
    return f["gamma"], f["beta"]


def _from_dlib(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    mean = checkpoint.get("input.mean")
    if mean is not None and not torch.allclose(torch.as_tensor(mean).float(), torch.tensor(DLIB_MEAN_RGB), atol=1e-3):
        raise WeightsError(
            f"the network's input layer subtracts {[round(float(v), 3) for v in mean]}, not dlib's "
            f"{list(DLIB_MEAN_RGB)} that {DlibResNet29.__name__}'s input spec declares"
        )
    size = checkpoint.get("input.size")
    if size is not None and [int(v) for v in size] != [CHIP_SIZE, CHIP_SIZE]:
        raise WeightsError(f"the network takes {[int(v) for v in size]} images, not {CHIP_SIZE}x{CHIP_SIZE}")
    layers, plan = _layers(checkpoint), _plan()
    kinds = [k if k != "bn_con" else "affine" for k, _ in layers]
    if kinds != [k for k, _, _ in plan]:
        first = next(
            (i for i, (a, b) in enumerate(zip(kinds, [k for k, _, _ in plan])) if a != b), min(len(kinds), len(plan))
        )
        got = kinds[first] if first < len(kinds) else "the end"
        want = plan[first][0] if first < len(plan) else "the end"
        raise WeightsError(
            f"not dlib's ResNet-29 face descriptor: layer {first} (bottom-up) is {got}, expected "
            f"{want} ({len(kinds)} layers, the network has {len(plan)})"
        )
    state: dict[str, Tensor] = {}
    for i, ((kind, fields), (_, module, geometry)) in enumerate(zip(layers, plan)):
        where = f"dlib layer {i} ({kind}{' -> ' + module if module else ''})"
        if geometry is not None:
            got = [int(v) for v in fields["geometry"]]
            if got != _GEOMETRY[geometry]:
                raise WeightsError(f"{where}: window/stride/padding {got}, expected {_GEOMETRY[geometry]}")
        if kind == "con":
            if "bias" not in fields:
                raise WeightsError(f"{where}: a convolution without bias")
            state[f"{module}.weight"], state[f"{module}.bias"] = fields["weight"], fields["bias"]
        elif module is not None and kind in ("affine", "bn_con"):
            state[f"{module}.gamma"], state[f"{module}.beta"] = _affine(kind, fields, where)
        elif kind == "fc":
            if "bias" in fields:
                raise WeightsError(f"{where}: the descriptor layer has a bias (dlib's has none)")
            state["fc.weight"] = fields["weight"].t().contiguous()  # dlib: x @ W with W [in, out]
        elif kind == "relu" and int(fields.get("disabled", 0)):
            raise WeightsError(f"{where}: a disabled ReLU")
    return state
