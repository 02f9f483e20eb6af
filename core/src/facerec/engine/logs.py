"""Run logs: JSON lines in ``log.jsonl`` (appended, so resumed runs continue the file) and TensorBoard
scalars when the ``tensorboard`` package is installed."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RunLogger:
    """Writes one JSON object per line; ``log(step, metrics, kind=...)``. No-op without a directory."""

    def __init__(
        self, run_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = True, stage: str | None = None
    ):
        self.stage = stage
        self.path = Path(run_dir) / "log.jsonl" if run_dir is not None and enabled else None
        self._tb = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
                except Exception:  # tensorboard not installed: JSONL only
                    self._tb = None

    def log(self, step: int, metrics: Mapping[str, Any], kind: str = "train") -> None:
        if self.path is None:
            return
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        if self.stage:
            record["stage"] = self.stage
        record.update({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    tag = f"{self.stage}/{kind}/{key}" if self.stage else f"{kind}/{key}"
                    self._tb.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
