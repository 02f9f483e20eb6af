"""Extraction throughput: facerun's fast PyTorch path (``optimize_for_inference``) vs the same backbone
exported by ``facerun export`` (preprocessing folded in, dynamic batch) and run by ONNX Runtime.

Both embed the same canonical batch (float RGB in [0, 1]) with 2 threads (torch intra-op threads /
ORT intra_op_num_threads); BatchNorm statistics calibrated on a random batch first (as in
bench_extract), outputs compared. Interleaved repeats, medians. Needs ``facerec-core[onnx]``.

Run: ``python benchmarks/bench_onnx.py [--full]`` (prints JSON records).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    from benchmarks.bench_extract import _calibrate_bn
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_extract import _calibrate_bn
    from benchmarks.common import compare, main, record

import facerec

THREADS = 2
QUICK = ("small-cnn", "iresnet50", "lightcnn29")
FULL = (
    "small-cnn",
    "iresnet18",
    "iresnet50",
    "iresnet100",
    "lightcnn9",
    "lightcnn29",
    "dcr-trunk",
    "vggface2-resnet50",
    "virface-resnet50",
)


def bench(name: str, quick: bool, tmp: Path) -> dict:
    from facerec.inference import optimize_for_inference
    from facerec.onnx.embedder import OnnxEmbedder
    from facerec.onnx.export import export_onnx

    try:
        model = facerec.create("backbone", name)
    except Exception as exc:  # a plugin that is not installed: reported, not fatal
        return {"name": f"onnx_{name}", "measured": "skipped", "notes": f"{type(exc).__name__}: {exc}"}
    size = model.input_spec.canonical_size
    _calibrate_bn(model, size)
    model.eval()
    path = tmp / f"{name}.onnx"
    t0 = time.perf_counter()
    export_onnx(model, path, name=name, with_preprocessing=True, check=False)
    export_s = time.perf_counter() - t0
    ort = OnnxEmbedder(path, threads=THREADS)
    fast = optimize_for_inference(model)
    batch = 8 if quick else 32
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = fast.embed(x)
    got = ort(x)
    diff = float((got - ref).abs().max())

    def ours():
        with torch.inference_mode():
            fast.embed(x)

    timing = compare(ours, lambda: ort(x), items=batch, repeats=5 if quick else 9, warmup=1)
    return record(
        f"onnx_{name}",
        f"images/s, batch {batch} at {size}px, {THREADS} threads: facerun fast path "
        "(facerec) vs ONNX Runtime on the exported model (baseline)",
        timing,
        max_abs_diff=diff,
        export_s=round(export_s, 2),
        load_average=[round(v, 2) for v in os.getloadavg()],
        notes="ratio > 1: facerun faster; both take canonical images (ORT graph includes the InputSpec preprocessing)",
    )


def run(quick: bool) -> list[dict]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return [{"name": "onnx", "measured": "skipped", "notes": "onnxruntime not installed (facerec-core[onnx])"}]
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for name in QUICK if quick else FULL:
            t0 = time.perf_counter()
            out.append(bench(name, quick, Path(d)))
            print(
                f"bench_onnx: {name}: {out[-1].get('ratio', out[-1].get('notes'))} ({time.perf_counter() - t0:.0f}s)",
                file=sys.stderr,
            )
    return out


if __name__ == "__main__":
    main(run)
