"""Every CUDA path of facerec in one script (< 10 minutes on one GPU): pass/fail and speed ratios.

    python benchmarks/gpu_check.py [--device cuda] [--out benchmarks/gpu_results]

Checks: training with AMP fp16 (grad scaler) and bf16; DDP over every visible GPU with nccl (torchrun);
the DVG-Face generator step (batched vs the original structure); Vec2Face sampling; extraction eager vs
facerec's fast path, ``--compile`` and ``--precision bf16`` (ratios, cosine to fp32); search on faiss-gpu
when installed. It prints one line per check and writes ``<out>/<gpu name>.json``. CI never runs it (no
GPU); ``--device cpu`` runs the same code small, to check the script itself.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _per_s(fn: Callable[[], object], items: int, device: str, repeats: int = 5) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return items / sorted(times)[len(times) // 2]


def check_amp_training(device: str, small: bool) -> dict:
    """A few Trainer steps in fp16 (grad scaler) and bf16: finite losses that fall, scaler active."""
    from facerec.api import TensorDataset
    from facerec.nn import SmallCNN
    from facerec.engine import TrainConfig, Trainer, dataset_batches
    from facerec.engine.classifier import classifier_loss
    from facerec.heads import ArcFaceHead

    out = {}
    for amp in ("fp16", "bf16"):
        torch.manual_seed(0)
        n, classes, size = 512, 16, 112
        data = TensorDataset(torch.arange(n) % classes, images=torch.rand(n, 3, size, size))
        backbone, head = SmallCNN(width=16, image_size=size), ArcFaceHead(128, classes, s=30, m=0.3)
        steps = 6 if small else 60
        cfg = TrainConfig(
            steps=steps,
            batch_size=64,
            lr=0.05,
            amp=amp if device != "cpu" or amp == "bf16" else "off",
            progress=False,
            log_every=1,
            device=device,
        )
        losses = []
        trainer = Trainer(
            {"backbone": backbone, "head": head},
            classifier_loss(backbone, classes),
            dataset_batches(data, cfg),
            cfg,
            local_batches=True,
        )
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.fit(until=trainer.step + 1)
            losses.append(float(trainer.last_metrics.get("loss", float("nan"))))
        wall = time.perf_counter() - t0
        finite = all(v == v and abs(v) != float("inf") for v in losses)
        scaler = getattr(trainer, "scaler", None)
        out[amp] = {
            "pass": finite,
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "steps_per_s": round(steps / wall, 2),
            "grad_scale": float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None,
        }
    return {"pass": all(v["pass"] for v in out.values()), **out}


_DDP_WORKER = """
import sys, torch
from facerec.engine import distributed as dist
ok = dist.init_from_env(sys.argv[1])
x = torch.ones(4, device=dist.local_device(sys.argv[1])) * (dist.rank() + 1)
dist.all_reduce_(x)
print("RANK", dist.rank(), dist.world_size(), float(x[0]), flush=True)
"""


def check_ddp(device: str, small: bool) -> dict:
    """torchrun over every visible GPU: an all-reduce, then `facerun train` a few steps under DDP."""
    n = max(1, torch.cuda.device_count()) if device.startswith("cuda") else 2
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "worker.py"
        worker.write_text(_DDP_WORKER)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={n}",
                str(worker),
                device,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        sums = [float(m) for m in re.findall(r"RANK \d+ \d+ ([\d.]+)", run.stdout)]
        expected = n * (n + 1) / 2
        reduce_ok = run.returncode == 0 and len(sums) == n and all(s == expected for s in sums)
        t0 = time.perf_counter()
        train = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={n}",
                "-m",
                "facerec.cli",
                "train",
                "--backbone",
                "small-cnn",
                "--dataset",
                "synthetic",
                "--param",
                "dataset.num_ids=20",
                "--out",
                str(Path(tmp) / "run"),
                "--steps",
                "4" if small else "40",
                "--batch-size",
                str(16 * n),
                "--device",
                device,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.perf_counter() - t0
    return {
        "pass": reduce_ok and train.returncode == 0,
        "processes": n,
        "backend": "nccl" if device.startswith("cuda") else "gloo",
        "all_reduce": sums,
        "train_wall_s": round(wall, 1),
        "error": "" if train.returncode == 0 and reduce_ok else (run.stderr + train.stderr)[-600:],
    }


def check_dvg_step(device: str, small: bool) -> dict:
    """DVG-Face generator step, batched vs the original structure (the #6 target was 1.5x on a GPU)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_dvg import _setup

    size, width, batch = (32, 0.25, 4) if small else (128, 1.0, 16)
    gen, step = _setup(size, width, batch, device)
    ours = _per_s(step(gen.train_step), batch, device)
    orig = _per_s(step(gen.original_step), batch, device)
    return {
        "pass": ours > 0,
        "batched_pairs_per_s": round(ours, 1),
        "original_pairs_per_s": round(orig, 1),
        "ratio": round(ours / orig, 2),
        "image_size": size,
        "batch": batch,
    }


def check_vec2face(device: str, small: bool) -> dict:
    from facerec_vec2face.generator import Vec2Face

    config, ids, per_id = ("tiny", 4, 8) if small else ("base", 32, 16)
    torch.manual_seed(0)
    gen = Vec2Face(config=config).eval().to(device)
    gen.fit_identity_sampler(torch.randn(64, 512) * 1.4)
    images = []

    def sample() -> None:
        images.clear()
        for b in gen.sample(ids, per_id, seed=0, device=device, batch_size=64):
            images.append(b.images)

    rate = _per_s(sample, ids * per_id, device, repeats=3)
    x = torch.cat(images)
    return {
        "pass": bool(torch.isfinite(x).all()) and 0 <= float(x.min()) and float(x.max()) <= 1,
        "config": config,
        "images_per_s": round(rate, 1),
    }


def check_extraction(device: str, small: bool) -> dict:
    """Eager vs facerec's fast path, --compile and bf16 (cosine to fp32) on IResNet-50 and LightCNN-29."""
    import facerec
    from facerec.inference import embed_tensor, low_precision_support, optimize_for_inference

    out = {}
    for name, params in (
        ("iresnet50", {"width": 16} if small else {}),
        ("lightcnn29", {"width": 0.25} if small else {}),
    ):
        torch.manual_seed(0)
        model = facerec.create("backbone", name, **params).eval().to(device)
        spec = model.input_spec
        batch = 8 if small else 128
        x = torch.rand(batch, 3, spec.canonical_size, spec.canonical_size, device=device)
        with torch.inference_mode():
            ref = model.embed(x).float()
        row: dict = {"eager": round(_per_s(lambda: model.embed(x), batch, device), 1)}
        variants = {"facerec": {}, "compile": {"compile": True}}
        if low_precision_support(device, "bf16") is None:
            variants["bf16"] = {"precision": "bf16"}
            variants["compile_bf16"] = {"compile": True, "precision": "bf16"}
        for label, opts in variants.items():
            t0 = time.perf_counter()
            fast = optimize_for_inference(copy.deepcopy(model), device=device, batch_size=batch, **opts)
            warm = time.perf_counter() - t0
            got = embed_tensor(fast, x, batch_size=batch, device=device).to(device)
            cos = float(torch.nn.functional.cosine_similarity(got, ref, dim=1).min())
            with torch.inference_mode():
                rate = _per_s(lambda: fast.embed(x), batch, device)
            row[label] = {
                "images_per_s": round(rate, 1),
                "vs_eager": round(rate / row["eager"], 2),
                "min_cosine": round(cos, 5),
                "warmup_s": round(warm, 1),
            }
        out[name] = row
    ok = all(v["min_cosine"] >= 0.999 for r in out.values() for k, v in r.items() if isinstance(v, dict))
    return {"pass": ok, **out}


def check_faiss_gpu(device: str, small: bool) -> dict:
    try:
        import faiss
    except ImportError:
        return {"pass": None, "skipped": "faiss not installed"}
    if not hasattr(faiss, "StandardGpuResources") or not device.startswith("cuda"):
        return {"pass": None, "skipped": "faiss-gpu not installed (faiss-cpu has no GPU index)"}
    from facerec.metrics import Gallery

    n, d, p, k = (10_000 if small else 1_000_000), 512, 1000, 10
    g = torch.nn.functional.normalize(torch.randn(n, d), dim=1)
    q = torch.nn.functional.normalize(g[:p] + 0.3 * torch.randn(p, d), dim=1)
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, d)
    index.add(g.numpy())
    t_gpu = _per_s(lambda: index.search(q.numpy(), k), p, "cpu", repeats=3)
    gallery = Gallery(g, normalise=False, backend="torch", device=device)
    t_torch = _per_s(lambda: gallery.search(q.to(device), k), p, device, repeats=3)
    same = float(
        (torch.from_numpy(index.search(q.numpy(), k)[1]) == gallery.search(q.to(device), k)[1]).all(1).float().mean()
    )
    return {
        "pass": same > 0.99,
        "faiss_gpu_probes_per_s": round(t_gpu),
        "facerec_torch_gpu_probes_per_s": round(t_torch),
        "same_top10": same,
    }


CHECKS = {
    "amp_training": check_amp_training,
    "ddp": check_ddp,
    "dvg_step": check_dvg_step,
    "vec2face_sampling": check_vec2face,
    "extraction": check_extraction,
    "faiss_gpu": check_faiss_gpu,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results"))
    parser.add_argument("--only", default="", help="comma-separated check names")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (run it where a GPU is, or --device cpu to check the script)")
        return 2
    small = not args.device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu-dry-run"
    results: dict = {
        "device": name,
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "checks": {},
    }
    wanted = [w for w in args.only.split(",") if w] or list(CHECKS)
    for check in wanted:
        t0 = time.perf_counter()
        try:
            res = CHECKS[check](args.device, small)
        except Exception as exc:
            res = {"pass": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        results["checks"][check] = res
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[res["pass"]]
        shown = {k: v for k, v in res.items() if k not in ("pass", "trace")}
        print(f"{verdict} {check}: {json.dumps(shown, default=str)[:400]}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")
    return 0 if all(r["pass"] is not False for r in results["checks"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
