"""Shared timing helpers: interleaved, warmed-up, median-based measurement of facerec vs a baseline."""

from __future__ import annotations

import gc
import json
import os
import resource
import threading
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


#: The shared real faces (LFW, AT&T, Yale) beside the repository, or where FACEREC_SHARED_DATA points.
SHARED = Path(os.environ.get("FACEREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def compare(
    facerec_fn: Callable[[], Any], baseline_fn: Callable[[], Any], *, items: int, repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Time both callables alternately (so machine noise hits both alike); items/s from the medians, the
    ratio as the median of the per-round ratios (each round's two runs share the machine's state then,
    which on a shared VM drifts by tens of percent within minutes)."""
    for _ in range(warmup):
        facerec_fn()
        baseline_fn()
    ours, base = [], []
    for _ in range(repeats):
        for fn, sink in ((facerec_fn, ours), (baseline_fn, base)):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - t0)
    t_ours, t_base = statistics.median(ours), statistics.median(base)
    return {
        "facerec_items_per_s": items / t_ours,
        "baseline_items_per_s": items / t_base,
        "ratio": statistics.median(b / o for o, b in zip(ours, base)),
        "facerec_s": t_ours,
        "baseline_s": t_base,
    }


def record(name: str, measured: str, timing: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"name": name, "measured": measured, **timing, "peak_mem_mb": round(peak_rss_mb(), 1), **extra}


def main(run: Callable[[bool], list[dict]]) -> None:
    """Standalone entry: `python benchmarks/bench_x.py [--full]` prints the records as JSON."""
    print(json.dumps(run("--full" not in sys.argv), indent=2))


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): return freed heap memory to the kernel (no-op on other C libraries)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_extra_mb(fn) -> float:
    """Peak resident memory above the level before ``fn`` ran (sampled every millisecond). Memory that malloc
    kept from earlier work is handed back first, or ``fn`` would reuse it unseen."""
    gc.collect()
    _malloc_trim()
    base = _rss_mb()
    peak = base
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(peak, _rss_mb()) - base
