"""DCR benchmarks: multi-scale LR synthesis (batched tensor op vs the original's per-image PIL path)
and retrieval precision@1 (chunked torch matmul vs a per-query loop)."""

from __future__ import annotations

import json
import statistics
import time

import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _record(name, n, ours, base, notes):
    return {"name": name, "measured": True, "facerec_items_per_s": n / ours, "baseline_items_per_s": n / base,
            "ratio": base / ours, "peak_mem_mb": None, "notes": notes}


def run(quick: bool) -> list[dict]:
    from PIL import Image

    from facerec_dcr.lowres import lowres_batch, pil_lowres, pil_to_tensor
    from facerec_dcr.retrieval import precision_at_1

    n = 32 if quick else 128
    imgs = torch.rand(n, 3, 120, 120)
    pils = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).astype("uint8")) for im in imgs]
    scales = (8, 12, 16, 20)
    ours = base = 0.0
    reps = 3 if quick else 7
    t_ours, t_base = [], []
    for _ in range(reps):  # interleaved
        t_ours.append(_median_time(lambda: lowres_batch(imgs, scales), 1))
        t_base.append(_median_time(lambda: [pil_to_tensor(pil_lowres(p, s)) for p in pils for s in scales], 1))
    ours, base = statistics.median(t_ours), statistics.median(t_base)
    out = [_record("dcr.lowres_synthesis", n, ours, base, "4 scales at 120 px; baseline = original PIL path")]
    m = 2000 if quick else 10000
    q, r = torch.randn(m, 512), torch.randn(m, 512)
    y = torch.randint(0, 500, (m,))

    def loop():
        hits = 0
        for i in range(m):
            d = ((r - q[i]) ** 2).sum(1)
            d[i] = float("inf")
            hits += int(y[int(d.argmin())] == y[i])
        return hits / m

    t_ours = [_median_time(lambda: precision_at_1(q, r, y, y, self_exclusion="exact"), 1) for _ in range(reps)]
    t_base = [_median_time(loop, 1) for _ in range(2)]
    out.append(_record("dcr.precision_at_1", m, statistics.median(t_ours), statistics.median(t_base),
                       "exact self-exclusion, 512-d; baseline = per-query torch loop"))
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
