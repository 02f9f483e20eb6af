"""Large CPU batches with facerun's allocation settings (``facerec.cpu_memory.use_fast_cpu_allocation``:
huge pages for tensors >= 2 MB, freed memory kept by malloc for the next batch) against torch's and
glibc's defaults, same code.

Each side is a fresh process (the settings are process-wide, and torch reads its switch once) that runs
IResNet-18's optimised forward (``optimize_for_inference``) on a batch of 32 (64 with --full) 112x112
faces: one warm-up (tuning), then the timed forwards, reported with the process's page faults. Rounds
alternate the two settings.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

try:
    from benchmarks.common import main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import main, record

from facerec.cpu_memory import env_without_allocation_settings

_CHILD = """
import json, resource, sys, time
from facerec.cpu_memory import use_fast_cpu_allocation
if sys.argv[3] == "facerun":
    use_fast_cpu_allocation()
import torch
import facerec
from facerec.inference import optimize_for_inference
torch.set_num_threads(1)
batch, repeats = int(sys.argv[1]), int(sys.argv[2])
model = facerec.create("backbone", "iresnet18").eval()
fast = optimize_for_inference(model, device="cpu")
x = torch.rand(batch, 3, 112, 112, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    fast.embed(x)  # tuning, first allocations
    times, f0 = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        t0 = time.perf_counter()
        fast.embed(x)
        times.append(time.perf_counter() - t0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / repeats
print(json.dumps({"s": sorted(times)[len(times) // 2], "faults": faults}))
"""


def _child(settings: str, batch: int, repeats: int) -> dict:
    env = {**env_without_allocation_settings(os.environ), "OMP_NUM_THREADS": "1"}
    if settings == "default":
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(batch), str(repeats), settings], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool = True) -> list[dict]:
    batch, rounds, repeats = (32, 2, 2) if quick else (64, 3, 3)
    ours, base = [], []
    for _ in range(rounds):
        ours.append(_child("facerun", batch, repeats))
        base.append(_child("default", batch, repeats))
    t_ours = statistics.median(r["s"] for r in ours)
    t_base = statistics.median(r["s"] for r in base)
    timing = {"facerec_items_per_s": batch / t_ours, "baseline_items_per_s": batch / t_base,
              "ratio": statistics.median(b["s"] / o["s"] for o, b in zip(ours, base)),
              "facerec_s": t_ours, "baseline_s": t_base}
    faults = (statistics.median(r["faults"] for r in ours), statistics.median(r["faults"] for r in base))
    return [record(f"cpu_allocation_iresnet18_b{batch}", f"images/s, optimised forward, batch {batch} at 112px, "
                   "facerun's allocation settings (huge pages, freed memory kept) vs the defaults", timing,
                   page_faults_per_forward={"facerec": round(faults[0]), "baseline": round(faults[1])},
                   notes="fresh process per side and round; same code, only the allocation settings differ")]


if __name__ == "__main__":
    main(run)
