"""Shared helpers for the vec2face tests: load original-format checkpoints the released way."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_original(model: nn.Module, path: Path) -> nn.Module:
    """Load a checkpoint written in the original format through core's loader (strict)."""
    try:
        from facerec.weights import load_weights
    except ImportError:  # core's weights module not landed yet: same converter path, strict
        state = type(model).convert_checkpoint(torch.load(path, map_location="cpu", weights_only=False))
        model.load_state_dict(state, strict=True)
        return model
    load_weights(model, path)
    return model


def strict_float() -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
