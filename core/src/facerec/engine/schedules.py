"""Learning-rate schedules as pure functions of the step (nothing to save: resume recomputes them)."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based) of a ``total``-step run."""
    warm = config.warmup_steps
    if warm and step < warm:
        return (step + 1) / warm
    t = step - warm
    span = max(1, total - warm)
    kind = config.schedule
    if kind == "constant":
        factor = 1.0
    elif kind == "step":
        factor = config.gamma ** (step // config.step_size)
    elif kind == "multistep":
        marks = [m * total if m < 1 else m for m in config.milestones]
        factor = config.gamma ** sum(step >= m for m in marks)
    else:
        progress = min(1.0, t / span)
        floor = config.min_lr / config.lr if config.lr > 0 else 0.0
        if kind == "cosine":
            factor = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif kind == "poly":
            factor = floor + (1.0 - floor) * (1.0 - progress) ** config.power
        else:  # pragma: no cover - validated by TrainConfig
            raise ValueError(kind)
    return factor
