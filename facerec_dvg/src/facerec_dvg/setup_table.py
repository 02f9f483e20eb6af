"""summary.md's setup table of the dvg recipe: one row per stage with its data, sizes, device and wall time."""

from __future__ import annotations

import time
from typing import Any

import torch


def device_name(device: str) -> str:
    """``cpu (N threads)`` or ``cuda:0 (NVIDIA ...)``: what ran, for the report."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({torch.get_num_threads()} threads)"


class Stages:
    """One row per stage for summary.md's setup table, with the wall time of each."""

    def __init__(self, device: str):
        self.rows: list[dict[str, Any]] = []
        self.device = device_name(device)
        self.t0 = time.perf_counter()

    def done(self, stage: str, data: str, identities: Any, images: Any, steps: Any, size: Any) -> float:
        now = time.perf_counter()
        seconds = round(now - self.t0, 1)
        self.t0 = now
        self.rows.append(
            {
                "stage": stage,
                "data": data,
                "identities": identities,
                "images": images,
                "steps": steps,
                "image size": size if size == "-" else f"{size} px",
                "device": self.device,
                "wall s": f"{seconds:.1f}",
            }
        )
        return seconds


__all__ = ["Stages", "device_name"]
