"""VirFace: (1) the per-epoch verification metric, vectorised (core's exact best-threshold sweep on cosine
scores) vs the repository's pure-Python cosine + per-threshold sweep; (2) a generator-stage step with the
backbone frozen under no_grad vs the original, which also computed (and dropped) backbone gradients."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def _device() -> str:
    return os.environ.get("FACEREC_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def bench_metric(n_pairs: int, dim: int, repeats: int) -> dict:
    from facerec_virface.evaluation import compat_pair_accuracy

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n_pairs, dim, generator=g), torch.randn(n_pairs, dim, generator=g)
    same = torch.arange(n_pairs) % 2 == 0
    b[same] = a[same] + 0.8 * b[same]
    al, bl, sl = a.tolist(), b.tolist(), same.tolist()

    def ours():
        return compat_pair_accuracy(a, b, same)["compat_accuracy"]

    def original():  # eval_1v1.py: Python cosine per pair, then every score tried as threshold
        scores = []
        for x, y in zip(al, bl):
            dot = sum(p * q for p, q in zip(x, y))
            nx = sum(p * p for p in x) ** 0.5
            ny = sum(q * q for q in y) ** 0.5
            scores.append(dot / (nx * ny))
        s, lab = np.asarray(scores), np.asarray(sl)
        best = 0.0
        for th in scores:
            acc = float(np.mean((s >= th) == lab))
            if acc > best:
                best = acc
        return best

    assert abs(ours() - original()) < 1e-9
    timing = compare(ours, original, items=n_pairs, repeats=repeats, warmup=1)
    return record(
        f"virface_compat_metric_{n_pairs}pairs",
        "pairs/s scored (cosine + best threshold)",
        timing,
        notes="identical accuracy to the original sweep (checked); baseline = the repository's "
        "pure-Python cosine and per-threshold numpy sweep",
    )


def bench_generator_step(size: int, width: int, batch: int, repeats: int, device: str) -> dict:
    from facerec_virface.generator import VirFaceGenerator
    from facerec_virface.heads import VirFaceArcFace
    from facerec_virface.resnet import VirFaceResNet18

    torch.manual_seed(0)
    backbone = VirFaceResNet18(image_size=size, width=width).to(device).eval()
    head = VirFaceArcFace(num_classes=1000).to(device).eval()
    gen = VirFaceGenerator().to(device)
    opt = torch.optim.SGD(gen.parameters(), lr=0.1, momentum=0.9)
    x = backbone.input_spec.prepare(torch.rand(batch, 3, size, size, device=device))
    y = torch.randint(0, 1000, (batch,), device=device)

    def step(frozen: bool):
        def run():
            if frozen:
                with torch.no_grad():
                    f, w = backbone(x), head.weight[y]
            else:  # original: features and W[y] keep their graph; backward also fills backbone grads
                f, w = backbone(x), head.weight[y]
            mse, kl, _ = gen.losses(f, w)
            loss = 5e3 * mse + 2.0 * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        return run

    timing = compare(step(True), step(False), items=batch, repeats=repeats, warmup=1)
    return record(
        f"virface_generator_step_r18_{size}px_w{width}",
        "generator-stage images/s",
        timing,
        device=device,
        notes="same losses; ours freezes backbone/head under no_grad",
    )


def run(quick: bool) -> list[dict]:
    device = _device()
    if quick:
        return [bench_metric(1000, 128, 3), bench_generator_step(48, 16, 16, 3, device)]
    return [
        bench_metric(6000, 512, 3),
        bench_generator_step(112, 64, 128 if device.startswith("cuda") else 32, 5, device),
    ]


if __name__ == "__main__":
    main(run)
