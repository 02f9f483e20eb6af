"""`python -m benchmarks [--full] [names...]`: run every bench_*.py, write results.json and results.md."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def cpu_flags() -> str:
    """The vector / matrix extensions that decide which kernels run (AVX2, AVX-512 variants, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = [f for f in flags if f.startswith(("avx", "amx", "fma")) or f in ("f16c", "vnni")]
                return " ".join(sorted(keep)) or "none of avx/amx"
    except OSError:
        pass
    return "unknown"


def main(argv: list[str]) -> int:
    quick = "--full" not in argv
    import torch

    threads = torch.get_num_threads()  # torch's default (or OMP_NUM_THREADS): restored for every module
    wanted = [a for a in argv if not a.startswith("--")]
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    records, failures = [], []
    for name in names:
        t0 = time.perf_counter()
        torch.set_num_threads(threads)  # a module that sets its own must not change the next one's
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            recs = module.run(quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            failures.append({"module": name, "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
            continue
        for r in recs:
            r.setdefault("module", name)
            records.append(r)
        print(f"{name}: {len(recs)} record(s) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    out = {
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        "threads": threads,
        "command": "python -m benchmarks" + (" --full" if not quick else ""),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "records": records,
        "failures": failures,
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2, default=float))
    lines = [
        f"Machine: {out['machine']}  ",
        f"CPU flags: {out['cpu_flags']}  ",
        f"Threads: {threads} unless a benchmark says otherwise  ",
        f"Command: `{out['command']}` ({out['when']})",
        "",
        "| benchmark | measured | facerec items/s | baseline items/s | ratio | peak MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        num = {k: float(r.get(k) or 0) for k in ("facerec_items_per_s", "baseline_items_per_s", "ratio", "peak_mem_mb")}
        if "images_per_s" in r:  # extraction: facerec's default path against torch.compile
            num.update(
                facerec_items_per_s=r["images_per_s"]["facerec"],
                baseline_items_per_s=r["images_per_s"]["torch_compile"],
                ratio=r["ratio_vs_torch_compile"],
            )
        lines.append(
            f"| {r['name']} | {r.get('measured') or ''} | {num['facerec_items_per_s']:.4g} | "
            f"{num['baseline_items_per_s']:.4g} | {num['ratio']:.2f}x | {num['peak_mem_mb']:.0f} |"
        )
    for f in failures:
        lines.append(f"| {f['module']} | FAILED: {f['error']} | | | | |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(out, indent=2, default=float))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
