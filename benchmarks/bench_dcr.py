"""DCR benchmarks: multi-scale LR synthesis (batched tensor op vs the original's per-image PIL path)
and retrieval precision@1 (chunked torch matmul vs a per-query loop), interleaved in one process."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def run(quick: bool) -> list[dict]:
    from facerec_dcr.lowres import lowres_batch, pil_lowres, pil_to_tensor
    from facerec_dcr.retrieval import precision_at_1
    from PIL import Image

    n = 32 if quick else 128
    imgs = torch.rand(n, 3, 120, 120, generator=torch.Generator().manual_seed(0))
    pils = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).astype("uint8")) for im in imgs]
    scales = (8, 12, 16, 20)
    reps = 3 if quick else 7
    t = compare(
        lambda: lowres_batch(imgs, scales),
        lambda: [pil_to_tensor(pil_lowres(p, s)) for p in pils for s in scales],
        items=n,
        repeats=reps,
    )
    out = [
        record(
            "dcr.lowres_synthesis",
            "images/s, 4 scales at 120 px",
            t,
            notes="baseline = the original's per-image PIL path",
        )
    ]

    m = 2000 if quick else 10000
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(m, 512, generator=g), torch.randn(m, 512, generator=g)
    y = torch.randint(0, 500, (m,), generator=g)

    def loop() -> float:
        hits = 0
        for i in range(m):
            d = ((r - q[i]) ** 2).sum(1)
            d[i] = float("inf")
            hits += int(y[int(d.argmin())] == y[i])
        return hits / m

    ours_p1 = precision_at_1(q, r, y, y, self_exclusion="exact")
    same = abs(float(ours_p1) - loop()) < 1e-6  # float32 mean vs Python division
    t = compare(lambda: precision_at_1(q, r, y, y, self_exclusion="exact"), loop, items=m, repeats=2)
    out.append(
        record(
            "dcr.precision_at_1",
            f"queries/s, {m} x {m}, 512-d",
            t,
            notes=f"exact self-exclusion; same precision@1 as the loop: {same}; baseline = per-query torch loop",
        )
    )
    return out


if __name__ == "__main__":
    main(run)
