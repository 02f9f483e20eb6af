"""Original VGGFace2-pytorch checkpoints -> facerec state dicts, strictly.

The released ``*_weight.pkl`` files are latin-1 pickles of ``{state_dict key: numpy array}`` without the
BatchNorm ``num_batches_tracked`` buffers (they predate it). Resume files of the original trainer hold the
same keys under ``model_state_dict``. Core's ``facerec.load_weights`` unpickles both safely; this module only
renames/fills and checks keys, so that a wrong file fails with the list of what is missing or unexpected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facerec.errors import WeightsError

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class OriginalAverageMeter:
    """Stand-in for the original trainer's ``utils.AverageMeter``, pickled into its resume checkpoints
    (``checkpoint.pth.tar``): admitted to torch's weights_only unpickler under that name, it only gets its
    attribute dict back (numbers), so those files load safely and their ``model_state_dict`` can be used."""


torch.serialization.add_safe_globals([(OriginalAverageMeter, "utils.AverageMeter")])
_CONTAINERS = ("model_state_dict", "state_dict", "model")


def expected_keys(se: bool) -> list[str]:
    """Every state-dict key of the original ResNet-50 / SE-ResNet-50 (classifier excluded)."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in _BN)]
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            for i in (1, 2, 3):
                keys += [f"{p}.conv{i}.weight", *(f"{p}.bn{i}.{s}" for s in _BN)]
            if b == 0 and (stage > 1 or inplanes != planes * 4):
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{s}" for s in _BN)]
            if se:
                keys += [f"{p}.conv4.weight", f"{p}.conv4.bias", f"{p}.conv5.weight", f"{p}.conv5.bias"]
            inplanes = planes * 4
    return keys


def _tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (int, float, np.number)):
        return torch.as_tensor(value)
    raise WeightsError(f"checkpoint entry {name!r} is a {type(value).__name__}, not an array")


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"VGGFace2 checkpoint must be a dict of arrays, got {type(checkpoint).__name__}")
    for key in _CONTAINERS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return inner
    return checkpoint


def convert_vggface2_checkpoint(checkpoint: Mapping[str, Any], *, se: bool) -> dict[str, Tensor]:
    """Strip ``module.``, turn arrays into tensors, add missing ``num_batches_tracked`` (0, as the original
    leaves them), and refuse unknown or missing keys. The classifier ``fc`` is optional."""
    state = {}
    for name, value in _unwrap(checkpoint).items():
        name = str(name)
        name = name[len("module.") :] if name.startswith("module.") else name
        state[name] = _tensor(name, value)
    want = expected_keys(se)
    allowed = set(want) | {"fc.weight", "fc.bias"}
    unexpected = sorted(set(state) - allowed)
    for key in want:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in want if k not in state]
    if ("fc.weight" in state) != ("fc.bias" in state):
        missing.append("fc.bias" if "fc.weight" in state else "fc.weight")
    if missing or unexpected:
        arch = "SE-ResNet-50" if se else "ResNet-50"
        other = (
            " (is this a SE-ResNet-50 file?)"
            if not se and any(".conv4." in k for k in unexpected)
            else (" (is this a ResNet-50 file?)" if se and any(".conv4." in k for k in missing) else "")
        )
        raise WeightsError(
            f"not a VGGFace2 {arch} checkpoint{other}: missing {len(missing)} keys "
            f"{_short(missing)}, unexpected {len(unexpected)} keys {_short(unexpected)}"
        )
    ordered = {k: state[k] for k in want}
    if "fc.weight" in state:
        ordered["fc.weight"], ordered["fc.bias"] = state["fc.weight"], state["fc.bias"]
    return {k: (v.float() if v.is_floating_point() else v) for k, v in ordered.items()}


def _short(keys: list[str], n: int = 5) -> str:
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"
