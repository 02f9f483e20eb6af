"""Feature extraction against what users pick, in the same run, batch 32 on the CPU (64 on a GPU):

* eager: the model's plain fp32 forward under ``no_grad``;
* torch.compile: inductor with frozen weights (``options={"freezing": True}``), its warm-up timed apart;
* ONNX Runtime (when installed): the model exported by ``torch.onnx.export``, default session options;
* facerec: ``optimize_for_inference`` (BatchNorm and per-channel affines folded, channels-last), also with
  ``compile=True`` and, where the CPU or GPU has native bf16, ``precision="bf16"``.

Every path is checked against the model's float64 forward on the first two images. The quick run covers
a few representative backbones; ``--full`` every registered one (``FACEREC_BENCH_BACKBONES`` picks)."""

from __future__ import annotations

import copy
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from benchmarks.common import main
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import main

import facerec
from facerec.inference import float64_output, low_precision_support, optimize_for_inference, relative_error

QUICK = ("iresnet50", "lightcnn29", "dlib-resnet29", "vggface2-resnet50", "small-cnn")


def _device() -> str:
    return os.environ.get("FACEREC_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _calibrate_bn(model: torch.nn.Module, size: int) -> None:
    """Random BatchNorm affines and statistics measured on a batch, as after training (untrained nets with
    zero residual gammas or arbitrary statistics are so ill-conditioned that fp32 itself is far from fp64)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in bns:
            if m.weight is not None:
                scale = torch.rand(m.num_features, generator=g) * 0.5 + 0.75
                m.weight.copy_(m.weight * scale if bool(m.weight.any()) else 0.2 * scale)
                m.bias.add_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.reset_running_stats()
            m.momentum = None
    if bns:
        model.train()
        with torch.no_grad():
            model.embed(torch.rand(8, 3, size, size, generator=g))
        for m in bns:
            m.momentum = 0.1
    model.eval()


def _timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call, the callables interleaved round by round after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _onnx_session(model: torch.nn.Module, x: torch.Tensor):
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
            dynamo=False,
        )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def bench_backbone(name: str, device: str, repeats: int) -> dict:
    try:
        model = facerec.create("backbone", name)
    except Exception as exc:  # a plugin backbone that cannot be built with defaults is reported
        return {
            "name": f"extract_{name}",
            "measured": "skipped",
            "notes": f"cannot build with defaults: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
        }
    spec = model.input_spec
    _calibrate_bn(model, spec.canonical_size)
    model = model.to(device)
    batch = 32 if device == "cpu" else 64
    x = torch.rand(batch, 3, spec.canonical_size, spec.canonical_size, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    xin = spec.prepare(x)
    exact = float64_output(model, x[:2])
    fns: dict[str, Callable[[], object]] = {}
    errors: dict[str, float] = {}

    def add(label: str, fn: Callable[[torch.Tensor], torch.Tensor], arg: torch.Tensor) -> None:
        def call() -> torch.Tensor:
            with torch.inference_mode():
                out = fn(arg)
            _sync(device)
            return out

        fns[label] = call
        if exact is not None:
            errors[label] = relative_error(call()[:2].float().cpu(), exact.cpu())

    add("eager", model, xin)
    t0 = time.perf_counter()
    compiled = torch.compile(copy.deepcopy(model), options={"freezing": True})
    with torch.inference_mode():
        compiled(xin)
    warmup = {"torch_compile": time.perf_counter() - t0}
    add("torch_compile", compiled, xin)
    if device == "cpu" and importlib.util.find_spec("onnxruntime") is not None:
        session = _onnx_session(copy.deepcopy(model).cpu(), xin[:2].cpu())
        add("onnxruntime", lambda a: torch.from_numpy(session.run(None, {"x": a.numpy()})[0]), xin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = optimize_for_inference(model, device=device, batch_size=batch)
        add("facerec", fast.embed, x)
        t0 = time.perf_counter()
        fast_c = optimize_for_inference(model, device=device, compile=True, batch_size=batch)
        warmup["facerec_compile"] = time.perf_counter() - t0
        add("facerec_compile", fast_c.embed, x)
        if low_precision_support(device, "bf16") is None:
            fast_b = optimize_for_inference(model, device=device, precision="bf16", batch_size=batch)
            add("facerec_bf16", fast_b.embed, x)
    med = _timed(fns, repeats)
    per_s = {k: round(batch / v, 2) for k, v in med.items()}
    return {
        "name": f"extract_{name}",
        "measured": f"images/s, batch {batch} at {spec.canonical_size}px on {device}",
        "images_per_s": per_s,
        "ratio_vs_torch_compile": round(med["torch_compile"] / med["facerec"], 3),
        "ratio_vs_eager": round(med["eager"] / med["facerec"], 3),
        "warmup_s": {k: round(v, 1) for k, v in warmup.items()},
        "error_vs_float64": {k: float(f"{v:.2e}") for k, v in errors.items()},
        "notes": "facerec = folded + channels-last, no warm-up beyond one checked batch",
    }


def run(quick: bool) -> list[dict]:
    device = _device()
    torch.manual_seed(0)
    installed = sorted({c.name for c in facerec.components("backbone")})
    only = [w for w in os.environ.get("FACEREC_BENCH_BACKBONES", "").split(",") if w]
    names = [n for n in installed if n in only] if only else [n for n in installed if n in QUICK or not quick]
    out = []
    for n in names:
        t0 = time.perf_counter()
        out.append(bench_backbone(n, device, repeats=3 if quick else 7))
        print(
            f"bench_extract: {n}: {out[-1].get('images_per_s', out[-1].get('notes'))} "
            f"({time.perf_counter() - t0:.0f}s)",
            file=sys.stderr,
        )
    return out


if __name__ == "__main__":
    main(run)
