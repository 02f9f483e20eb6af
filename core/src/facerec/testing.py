"""Parity-fixture support (public): rebuild the original models' state dicts and inputs from the
closed-form formula of ``shared/parity/README.md`` and compare outputs within the fixture tolerance.

Plugins' parity tests load the state dict built here through the same converter that loads the
papers' released checkpoints.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from safetensors.torch import load_file

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "float16": torch.float16,
    "int32": torch.int32,
    "bool": torch.bool,
}


def fixture_tensor(
    k: int, shape: list[int], init: str, A: float, B: float, C: float, weight_scale: float = 1.0
) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    t = np.arange(n, dtype=np.float64)
    s = np.sin(A * t + B * k + C)
    if init == "weight":
        fan_in = n // shape[0] if len(shape) >= 2 else n
        v = s * (2.0 * weight_scale) / np.sqrt(fan_in)
    elif init == "bias":
        v = 0.02 * s
    elif init == "norm_weight":
        v = 1.0 + 0.1 * s
    elif init == "norm_bias":
        v = 0.1 * s
    elif init == "running_mean":
        v = 0.05 * s
    elif init == "running_var":
        v = 1.25 + 0.25 * s
    elif init == "zero":
        v = 0.0 * s
    elif init == "one":
        v = 1.0 + 0.0 * s
    elif init == "prelu":
        v = 0.25 + 0.05 * s
    elif init == "embed":
        v = 0.02 * s
    elif init == "index":
        v = t
    else:
        raise ValueError(f"unknown init {init!r}")
    return v.reshape(shape)


def fixture_input(shape: list[int], kind: str, D: float, E: float) -> torch.Tensor:
    n = int(np.prod(shape)) if shape else 1
    t = np.arange(n, dtype=np.float64)
    s = np.sin(D * t + E)
    if kind == "unit":
        v = 0.5 + 0.5 * s
    elif kind == "signed":
        v = s
    elif kind.startswith("scaled:"):
        v = float(kind.split(":", 1)[1]) * s
    elif kind == "unit_rows":
        v = s.reshape(shape)
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    elif kind.startswith("labels:"):
        return torch.from_numpy(((t * 7 + 3) % int(kind.split(":", 1)[1])).astype(np.int64).reshape(shape))
    else:
        raise ValueError(f"unknown input kind {kind!r}")
    return torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(shape))


@attrs.frozen
class Fixture:
    name: str
    spec: dict[str, Any]
    outputs: dict[str, torch.Tensor]

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """The ORIGINAL model's state dict, keys and order as the original checkpoint holds them."""
        w = self.spec.get("weights") or {}
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k, entry in enumerate(self.spec.get("state_dict", [])):
            v = fixture_tensor(k, entry["shape"], entry["init"], w["A"], w["B"], w["C"], w.get("weight_scale", 1.0))
            # ascontiguousarray turns 0-d arrays into shape (1,); keep the recorded shape (num_batches_tracked)
            tensor = torch.from_numpy(np.ascontiguousarray(v)).reshape(entry["shape"])
            out[entry["key"]] = tensor.to(_DTYPES[entry["dtype"]])
        return out

    def inputs(self) -> dict[str, torch.Tensor]:
        """Formula inputs in JSON order; metric fixtures store theirs as ``input_*`` outputs."""
        out = {}
        for name, entry in (self.spec.get("inputs") or {}).items():
            if "kind" in entry and "D" in entry:
                out[name] = fixture_input(entry["shape"], entry["kind"], entry["D"], entry["E"])
        for name, tensor in self.outputs.items():
            if name.startswith("input_"):
                out[name[len("input_") :]] = tensor
        return out

    def tolerance(self, output: str) -> tuple[float, float]:
        tol = self.spec.get("tolerance") or {}
        per = (tol.get("per_output") or {}).get(output) or {}
        return float(per.get("atol", tol.get("atol", 0.0))), float(per.get("rtol", tol.get("rtol", 0.0)))

    def check(self, name: str, got: torch.Tensor) -> None:
        """Raise AssertionError unless ``|got - exp| <= atol + rtol*|exp|`` elementwise (exact for ints)."""
        exp = self.outputs[name]
        got = torch.as_tensor(got).detach().cpu()
        assert tuple(got.shape) == tuple(exp.shape), (
            f"{self.name}.{name}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
        )
        if not exp.is_floating_point():
            assert torch.equal(got.to(exp.dtype), exp), f"{self.name}.{name}: integer output differs"
            return
        atol, rtol = self.tolerance(name)
        g, e = got.double(), exp.double()
        bad = (g - e).abs() > atol + rtol * e.abs()
        assert not bool(bad.any()), (
            f"{self.name}.{name}: {int(bad.sum())} of {e.numel()} values off; "
            f"max |diff| {float((g - e).abs().max()):.3g} (atol {atol}, rtol {rtol})"
        )


def load_fixture(name: str, directory: str | Path) -> Fixture:
    directory = Path(directory)
    spec = json.loads((directory / f"{name}.json").read_text())
    outputs = load_file(str(directory / f"{name}.safetensors"))
    return Fixture(name=name, spec=spec, outputs=outputs)


__all__ = ["Fixture", "load_fixture", "fixture_tensor", "fixture_input"]
