"""A dependency-free progress line on stderr: step, items/s, ETA and the latest metrics."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Redraws one line on a terminal (at most ~4 times a second); prints plain lines otherwise."""

    def __init__(
        self,
        total: int,
        *,
        desc: str = "train",
        unit: str = "img",
        enabled: bool = True,
        stream: TextIO | None = None,
        start: int = 0,
    ):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start_step = start
        self.t0 = time.perf_counter()
        self.items = 0
        self._last_draw = 0.0
        self._lines = max(1, total // 10)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return self.items / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, items: int, metrics: Mapping[str, float] | None = None) -> None:
        """``step`` = steps done so far; ``items`` processed since the last update."""
        self.items += items
        if not self.enabled:
            return
        now = time.perf_counter()
        final = step >= self.total
        if self.tty and not final and now - self._last_draw < 0.25:
            return
        if not self.tty and not final and (step - self.start_step) % self._lines:
            return
        self._last_draw = now
        done = step - self.start_step
        elapsed = now - self.t0
        eta = elapsed / done * (self.total - step) if done else 0.0
        shown = " ".join(f"{k} {v:.4g}" for k, v in (metrics or {}).items())
        line = (
            f"{self.desc} {step}/{self.total} | {self.rate():.1f} {self.unit}/s | ETA {format_duration(eta)} | {shown}"
        )
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, step: int, metrics: Mapping[str, float]) -> None:
        """Evaluation results as lines of their own, one per protocol (or validation set):
        ``eval step 200 | pairs/lfw: accuracy 0.9950 accuracy_std 0.0030 accuracy_highest 0.9950``."""
        if not self.enabled or not metrics:
            return
        groups: dict[str, list[str]] = {}
        for key, value in metrics.items():
            prefix, _, name = key.rpartition("/")
            if name.startswith("n_") or name.startswith("threshold"):
                continue  # counts and thresholds: in log.jsonl, not worth a console column
            groups.setdefault(prefix, []).append(f"{name} {value:.4f}")
        lines = [
            f"eval step {step} | {prefix + ': ' if prefix else ''}{' '.join(values)}"
            for prefix, values in groups.items()
        ]
        self.stream.write(("\n" if self.tty else "") + "\n".join(lines) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
