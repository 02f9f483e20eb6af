"""Fixtures of the DCR tests: original-format checkpoints and loading them as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def original_checkpoint(state: dict, *, ddp: bool, centers: dict | None = None) -> dict:
    """Wrap a state dict the way the original train.py saves it (``module.`` under DDP)."""
    prefix = "module." if ddp else ""
    return {"epoch": 3, "state_dict": {prefix + k: v for k, v in state.items()},
            "criterion": centers or {}, "optimizer": {"state": {}, "param_groups": []},
            "monitor": {"best": 0.5, "num_bad_epochs": 0}}


@pytest.fixture
def save_original(tmp_path):
    def save(state: dict, *, ddp: bool, centers: dict | None = None, name: str = "model_best.pth.tar") -> Path:
        path = tmp_path / name
        torch.save(original_checkpoint(state, ddp=ddp, centers=centers), path)
        return path
    return save


@pytest.fixture
def load_into():
    """Load a checkpoint file through facerec's public, strict loader."""
    try:
        from facerec.weights import load_weights
    except ImportError:  # TEMPORARY until core's weights module lands: same steps, done here
        def load_weights(model, path):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(type(model).convert_checkpoint(obj), strict=True)

    def load(model: torch.nn.Module, path: Path) -> None:
        load_weights(model, path)
    return load
