"""Vec2Face generation throughput: `Vec2Face.sample` (perturbation, per-identity seeded masks, decode,
clip, to [0,1]) against a plain per-batch forward of the same model on the same number of vectors.

quick: the tiny config on CPU; --full: the released base config (CUDA when available)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def run(quick: bool = True) -> list[dict]:
    from facerec_vec2face.generator import Vec2Face

    device = "cuda" if torch.cuda.is_available() and not quick else "cpu"
    config, ids, per_id, bs = ("tiny", 8, 16, 64) if quick else ("base", 16, 16, 64)
    torch.manual_seed(0)
    gen = Vec2Face(config=config).eval().to(device)
    gen.fit_identity_sampler(torch.randn(64, 512) * 1.4)
    vecs = (torch.randn(ids * per_id, 512) * 1.4).to(device)

    def ours() -> None:
        for batch in gen.sample(ids, per_id, seed=0, device=device, batch_size=bs):
            batch.images.sum()

    @torch.no_grad()
    def plain() -> None:
        for i in range(0, len(vecs), bs):
            gen(vecs[i : i + bs]).image.clamp(-1, 1).cpu()
        if device == "cuda":
            torch.cuda.synchronize()

    timing = compare(ours, plain, items=ids * per_id, repeats=3 if quick else 5)
    return [
        record(
            "vec2face_generate",
            f"images/s: Vec2Face.sample vs plain per-batch forward ({config}, {device}, batch {bs})",
            timing,
            notes="sample adds seeded per-identity perturbation and masks, clip, [0,1], CPU copy",
        )
    ]


if __name__ == "__main__":
    main(run)
