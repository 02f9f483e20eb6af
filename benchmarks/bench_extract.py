"""Feature extraction speed for every registered backbone (core and plugins): facerec's fast inference
path (``optimize_for_inference``: BatchNorm folded, channels-last, Winograd 3x3 convs where they are
faster on this CPU, inference mode) vs the plain eager fp32 forward under ``no_grad`` of the same model
on the same batch; outputs must agree within 1e-4 (relative to the largest output). Achieved GFLOP/s
(torch.utils.flop_counter, i.e. direct-convolution FLOPs, so Winograd layers can exceed the machine) is
reported as a share of the measured fp32 matmul GFLOP/s of this machine (best of 10)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record

import facerec
from facerec.inference import float64_output, optimize_for_inference, relative_error
from facerec.winograd import WinogradConv2d


def _device() -> str:
    return os.environ.get("FACEREC_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, n: int = 1024, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):  # thread pool and caches
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.embed(x)
    return int(counter.get_total_flops())


def _calibrate_bn(model: torch.nn.Module, size: int) -> None:
    """A random BatchNorm affine (so folding is really exercised, and zero-initialised residual gammas, as
    in IResNet, do not silence whole branches: with them the outputs did not depend on any block's
    convolutions), then statistics measured on a batch, as after training.
    Untrained nets with arbitrary statistics can be so ill-conditioned that their own fp32 and fp64 outputs
    differ by 17% (SE-ResNet-50 on 0..255 input), which no 1e-4 check survives."""
    # BatchNorm1d on the embedding keeps unit statistics: calibrated on 8 nearly identical random-net
    # embeddings it would divide by their tiny spread and amplify fp32 rounding ~100x
    bns = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))
           and m.running_mean is not None]
    if not bns:
        return
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in bns:
            if m.weight is not None:  # residual gammas that start at zero get small values, as after training
                scale = torch.rand(m.num_features, generator=g) * 0.5 + 0.75
                m.weight.copy_(m.weight * scale if bool(m.weight.any()) else 0.2 * scale)
                m.bias.add_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model.embed(torch.rand(8, 3, size, size, generator=g))
    model.eval()
    for m in bns:
        m.momentum = 0.1


def bench_backbone(name: str, quick: bool, device: str, peak: float) -> dict:
    try:
        model = facerec.create("backbone", name)
    except Exception as exc:  # plugin backbones that cannot be built with defaults are reported, not fatal
        return {"name": f"extract_{name}", "measured": "skipped", "notes": f"cannot build with defaults: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    spec = getattr(model, "input_spec", None)
    if spec is None:
        return {"name": f"extract_{name}", "measured": "skipped", "notes": "no input_spec"}
    _calibrate_bn(model, spec.canonical_size)
    model = model.eval().to(device)
    batch = (8 if quick else 16) if device == "cpu" else 64
    size = spec.canonical_size
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.embed(x)
    _sync(device)
    once = time.perf_counter() - t0
    if quick and once > QUICK_LIMIT_S:
        return {"name": f"extract_{name}", "measured": "skipped",
                "notes": f"one eager batch took {once:.1f}s (> {QUICK_LIMIT_S}s): run with --full"}
    fast = optimize_for_inference(model, device=device)
    with torch.no_grad():
        ref = model.embed(x)
    with torch.inference_mode():
        got = fast.embed(x)
    rel = relative_error(got, ref)
    # both paths against the float64 forward: random deep nets can be so badly conditioned that the eager
    # fp32 output itself is more than 1e-4 away from exact (the library's check allows twice that error)
    exact = float64_output(model, x[:2])
    err_eager = None if exact is None else relative_error(ref[:2], exact)
    err_ours = None if exact is None else relative_error(got[:2], exact)

    def eager():
        with torch.no_grad():
            model.embed(x)
        _sync(device)

    def ours():
        with torch.inference_mode():
            fast.embed(x)
        _sync(device)

    t = compare(ours, eager, items=batch, repeats=5 if quick else 9, warmup=1)
    flops = _flops(model, x)
    gflops = flops / t["facerec_s"] / 1e9
    return record(f"extract_{name}", f"images/s, batch {batch} at {size}px on {device}"
                  + (f", {torch.get_num_threads()} thread(s)" if device == "cpu" else ""), t,
                  gflops_per_s=round(gflops, 2), share_of_matmul=round(gflops / peak, 3),
                  max_rel_diff=rel, error_vs_float64={"facerec": err_ours, "eager": err_eager},
                  algorithms=_algorithms(fast),
                  notes=f"outputs within 1e-4: {rel <= 1e-4}"
                  + (f" (vs float64: ours {err_ours:.1e}, eager {err_eager:.1e})" if exact is not None else "")
                  + "; "
                  f"{flops / batch / 1e9:.2f} GFLOP/image; matmul peak {peak:.1f} GFLOP/s")


def _algorithms(model: torch.nn.Module) -> dict[str, int]:
    """How many 3x3 layers ended up direct / Winograd F(2x2) / F(4x4) after tuning."""
    names = {0: "direct", 2: "F2", 4: "F4"}
    counts: dict[str, int] = {}
    for mod in model.modules():
        if isinstance(mod, WinogradConv2d):
            for m in mod.chosen.values():
                counts[names[m]] = counts.get(names[m], 0) + 1
    return counts


#: In quick mode a backbone whose single eager batch takes longer than this is skipped (with the reason).
QUICK_LIMIT_S = 10.0


def run(quick: bool) -> list[dict]:
    device = _device()
    torch.manual_seed(0)
    peak = matmul_gflops(device)
    names = sorted({c.qualified for c in facerec.components("backbone")})
    only = [w for w in os.environ.get("FACEREC_BENCH_BACKBONES", "").split(",") if w]
    if only:  # e.g. FACEREC_BENCH_BACKBONES=small-cnn,lightcnn9
        names = [n for n in names if n.split(":")[-1] in only or n in only]
    out = []
    for n in names:
        t0 = time.perf_counter()
        out.append(bench_backbone(n, quick, device, peak))
        print(f"bench_extract: {n}: {out[-1].get('ratio', out[-1].get('notes'))} ({time.perf_counter() - t0:.0f}s)",
              file=sys.stderr)
    return out


if __name__ == "__main__":
    main(run)
