"""Synthetic face rendering throughput (issue 3 asks for >= 500 images/s at 112x112 on 2 cores).

facerec: ``facerec.data.synthetic.render`` on batches of 64 (vectorised over the batch).
baseline: the same renderer called one image at a time (what a per-sample ``__getitem__`` would do),
measured in the same process, interleaved with the batched runs, after a warm-up; medians of repeats.
Also reported: the NIR and low-resolution (degrade to 8 px) paths, and 224x224.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import torch

from facerec.data.synthetic import degrade, render


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(name: str, batch_fn, base_fn, n_batch: int, n_base: int, repeats: int, notes: str) -> dict:
    batch_fn(), base_fn()  # warm-up (caches, noise bank, allocator)
    fast, slow = [], []
    for _ in range(repeats):  # interleaved so load changes hit both alike
        fast.append(_rate(batch_fn, n_batch))
        slow.append(_rate(base_fn, n_base))
    f, b = statistics.median(fast), statistics.median(slow)
    return {
        "name": name,
        "measured": "images/s",
        "facerec_items_per_s": round(f, 1),
        "baseline_items_per_s": round(b, 1),
        "ratio": round(f / b, 2),
        "peak_mem_mb": round(_peak_mb(), 1),
        "notes": notes,
    }


def run(quick: bool) -> list[dict]:
    torch.manual_seed(0)
    n = 128 if quick else 512
    repeats = 3 if quick else 5
    ids = torch.arange(n) // 4
    smp = torch.arange(n) % 4
    n_base = 16 if quick else 48
    threads = torch.get_num_threads()
    out = []
    for size in (112, 224) if not quick else (112,):
        out.append(
            _measure(
                f"render VIS {size}x{size}",
                lambda: render(ids, smp, size=size),
                lambda: [render(ids[i : i + 1], smp[i : i + 1], size=size) for i in range(n_base)],
                n,
                n_base,
                repeats,
                f"batch {n} (chunks of 64) vs one image per call; {threads} threads; target >= 500/s at 112",
            )
        )
    out.append(
        _measure(
            "render NIR 112x112",
            lambda: render(ids, smp, size=112, modality="NIR"),
            lambda: [render(ids[i : i + 1], smp[i : i + 1], size=112, modality="NIR") for i in range(n_base)],
            n,
            n_base,
            repeats,
            f"{threads} threads",
        )
    )
    imgs = render(ids, smp, size=112)
    out.append(
        _measure(
            "degrade 112->8->112",
            lambda: degrade(imgs, 8),
            lambda: [degrade(imgs[i : i + 1], 8) for i in range(n_base)],
            n,
            n_base,
            repeats,
            "antialiased bicubic down, bicubic up; batch vs per image",
        )
    )
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
