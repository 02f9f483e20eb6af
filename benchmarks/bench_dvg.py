"""DVG-Face generator training step: batched (1 decoder + 2 face-model calls) vs the original step
structure (6 decoder + 5 LightCNN calls), same losses, same model and inputs; and sampling pairs to
LMDB vs the original per-image JPEG loop of gen_samples.py."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import torch

try:
    from benchmarks.common import compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import compare, main, record


def _device() -> str:
    return os.environ.get("FACEREC_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def _setup(size: int, width: float, batch: int, device: str):
    from facerec_dvg.dvgface import DVGFace
    from facerec_dvg.lightcnn import LightCNN29
    from facerec_dvg.losses import derangement

    torch.manual_seed(0)
    gen = DVGFace(image_size=size, width=width).to(device)
    gen.set_face_model(LightCNN29(image_size=size, width=width).to(device))
    opt = gen.optimizer()
    g = torch.Generator().manual_seed(0)
    nir, vis = (torch.rand(batch, 3, size, size, generator=g).to(device) for _ in range(2))
    idx, noise = derangement(batch, g, device), torch.randn(batch, 256, generator=g).to(device)

    def step(fn):
        def run():
            out = fn(nir, vis, idx, noise)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        return run

    return gen, step


def bench_step(size: int, width: float, batch: int, repeats: int, device: str) -> dict:
    torch.backends.cudnn.benchmark = True
    gen, step = _setup(size, width, batch, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timing = compare(step(gen.train_step), step(gen.original_step), items=batch, repeats=repeats, warmup=2)
    extra = {}
    if device.startswith("cuda"):
        extra["gpu_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return record(
        f"dvg_generator_step_{size}px_w{width}",
        "generator training pairs/s (fwd+bwd+Adam)",
        timing,
        notes=f"{device} ({torch.cuda.get_device_name(0) if device.startswith('cuda') else 'CPU'}), "
        f"batch {batch}, {size}x{size}, width {width}; baseline = original call structure "
        "(6 decoder, 5 LightCNN calls), same losses",
        target="ratio >= 1.5",
        **extra,
    )


def bench_sampling(n: int, size: int, width: float, device: str) -> dict:
    """Ours: batched sampling written to LMDB by core's writer. Baseline: gen_samples.py's loop
    (two decoder calls per batch, per-image uint8 truncation, PIL JPEG save and a print)."""
    import io

    import numpy as np
    from facerec.api import TensorDataset
    from facerec.data.writers import write_dataset
    from PIL import Image

    gen, _ = _setup(size, width, 8, device)
    gen.attributes_nir.copy_(torch.nn.functional.normalize(torch.randn_like(gen.attributes_nir), dim=1))
    gen.attributes_vis.copy_(torch.nn.functional.normalize(torch.randn_like(gen.attributes_vis), dim=1))
    gen.attributes_count.fill_(len(gen.attributes_nir))
    tmp = Path(tempfile.mkdtemp(prefix="bench_dvg_"))
    counter = [0]
    # an environment without the lmdb package: the list layout (JPEG files + list)
    fmt = "lmdb" if importlib.util.find_spec("lmdb") else "list"

    def ours():
        g = torch.Generator().manual_seed(0)
        nirs, viss = [], []
        for s in range(0, n, 64):
            a, b = gen.sample_pairs(min(64, n - s), generator=g, device=device)
            nirs.append(a.cpu())
            viss.append(b.cpu())
        nir, vis = torch.cat(nirs), torch.cat(viss)
        data = TensorDataset(
            torch.arange(n).repeat(2),
            images=torch.cat([nir, vis]),
            modality=torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)]),
        )
        counter[0] += 1
        write_dataset(data, tmp / f"ours{counter[0]}.{fmt}", fmt, quality=75)

    def baseline():
        g = torch.Generator().manual_seed(0)
        counter[0] += 1
        out = tmp / f"base{counter[0]}"
        (out / "nir").mkdir(parents=True)
        (out / "vis").mkdir()
        k = 0
        sink = io.StringIO()
        with torch.no_grad():
            for s in range(0, n, 50):
                b = min(50, n - s)
                noise = torch.randn(b, 256, generator=g).to(device)
                identity = gen.identity_sampler(noise)
                j = torch.randint(int(gen.attributes_count), (b,), generator=g).to(device)
                z_n, z_v = gen.attributes_nir[j], gen.attributes_vis[j]
                fake_nir = gen.decoder(torch.cat([identity, z_n], 1), gen.encoder_nir.style(z_n), "nir")
                fake_vis = gen.decoder(torch.cat([identity, z_v], 1), gen.encoder_vis.style(z_v), "vis")
                for i in range(b):
                    k += 1
                    for img, sub in ((fake_nir[i], "nir"), (fake_vis[i], "vis")):
                        arr = (255 * img.cpu().numpy().transpose(1, 2, 0)).astype("uint8")  # truncation
                        Image.fromarray(np.ascontiguousarray(arr)).save(out / sub / f"{k}.jpg")
                    print(f"saving {k}.jpg", file=sink)
            (out / "img_list.txt").write_text("".join(f"{i}.jpg\n" for i in range(1, k + 1)))

    timing = compare(ours, baseline, items=n, repeats=3, warmup=1)
    return record(
        f"dvg_sampling_{size}px",
        "generated pairs/s, sampled and written (ours: core writer; original: per-image JPEG loop)",
        timing,
        notes=f"{device}, {n} pairs at {size}x{size}, width {width}, ours written as {fmt}",
    )


def run(quick: bool = True) -> list[dict]:
    device = _device()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    records = []
    if quick:
        records.append(bench_step(64, 0.5, 8, 5, device))
        records.append(bench_sampling(128, 64, 0.5, device))
    else:
        records.append(bench_step(128, 1.0, 8, 7, device))  # the released architecture and batch
        records.append(bench_step(64, 0.5, 8, 7, device))
        records.append(bench_sampling(512, 128, 1.0, device))
    return records


if __name__ == "__main__":
    main(run)
