"""Exact checkpoints of the hand-written training loops (the dual generators', the identity sampler's).

They are written in core's training-checkpoint format (``facerec.engine.save_checkpoint``: modules,
optimizer state, global RNG states, step; one safetensors file, renamed into place) plus what such a loop
keeps for itself: its own ``torch.Generator`` (every batch, noise and derangement is drawn from it), the
current derangement, the last losses and the per-step log. A loop restored from one continues as if it had
never stopped: the same batches, the same updates, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from facerec.engine import load_checkpoint, save_checkpoint
from torch import Tensor, nn


class _LoopState(nn.Module):
    """The loop's random generator and extra tensors as buffers, so that the checkpoint stores them strictly."""

    def __init__(self, rng: torch.Generator, extra: Mapping[str, Tensor]):
        super().__init__()
        self.register_buffer("rng", rng.get_state())
        for key, value in extra.items():
            self.register_buffer(key, value.detach().cpu().clone())


class LoopCheckpoint:
    """Where a loop saves (``path``), how often (``every`` steps; 0: only when it stops) and where it stops
    as if interrupted (``stop_at``, like ``train.stop_at``). ``path=None``: no checkpoints at all."""

    def __init__(
        self, path: str | Path | None, every: int = 0, stop_at: int | None = None, meta: Mapping[str, Any] | None = None
    ):
        self.path = Path(path) if path is not None else None
        self.every = int(every)
        self.stop_at = stop_at
        self.meta = dict(meta or {})  # what the checkpoint says about itself (arch, build parameters)

    def exists(self) -> bool:
        return self.path is not None and self.path.is_file()

    def restore(
        self,
        modules: Mapping[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        rng: torch.Generator,
        extra: Mapping[str, Tensor] | None = None,
    ) -> tuple[int, dict[str, Tensor], dict[str, Any]]:
        """Load the saved state into ``modules``/``optimizer``/``rng`` (strict). Returns (step, extra tensors,
        loop meta: ``stats``, ``log``); (0, ``extra``, {}) when there is nothing to resume from."""
        extra = dict(extra or {})
        if not self.exists():
            return 0, extra, {}
        state = _LoopState(rng, extra)
        info = load_checkpoint(self.path, {**modules, "loop": state}, optimizer=optimizer)
        rng.set_state(state.rng)
        device = {k: v.device for k, v in extra.items()}
        return info["step"], {k: getattr(state, k).to(device[k]) for k in extra}, dict(info["meta"].get("loop", {}))

    def end(self, steps: int) -> int:
        """The last step this run trains: ``steps``, or ``stop_at`` when that comes first."""
        return steps if self.stop_at is None else min(steps, self.stop_at)

    def due(self, step: int, end: int) -> bool:
        """Save after this step: every ``every`` steps and at the run's last step."""
        return self.path is not None and (bool(self.every and step % self.every == 0) or step >= end)

    def save(
        self,
        step: int,
        modules: Mapping[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        rng: torch.Generator,
        extra: Mapping[str, Tensor] | None = None,
        stats: Mapping[str, float] | None = None,
        log: list | None = None,
    ) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "loop": {"stats": dict(stats or {}), "log": list(log or [])}}
        save_checkpoint(
            self.path,
            {**modules, "loop": _LoopState(rng, dict(extra or {}))},
            step=step,
            optimizer=optimizer,
            meta=meta,
        )
