"""Data loading of 112x112 JPEG faces: facerec's LMDB pipeline vs the usual per-file PIL image folder.

facerec: ``LMDBDataset.batch`` (one read-only lock-free LMDB, libjpeg-turbo decode to uint8, one
batched float conversion). Baseline: what most face-recognition repos do (torchvision ImageFolder
style): per file ``PIL.Image.open(path).convert("RGB")`` + ``to_tensor`` + ``torch.stack``.
Both single process, page cache warm, same images, same batch size; interleaved repeats, medians.
Also measured: conversion speed (folder -> LMDB) and the cost of ``facerun data`` style decoding
of other formats is not part of the comparison. Uses the real LFW faces from ../shared/data when
present, else synthetic faces written as JPEG.

Run: ``python benchmarks/bench_data.py [--quick]`` (prints JSON records).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEREC_SHARED_DATA", ROOT.parent / "shared" / "data"))
BATCH = 64


def _faces(tmp: Path, n: int) -> tuple[Path, str]:
    """A folder-per-identity of n real JPEG faces (LFW subset) or synthetic ones."""
    from facerec.data.formats import ImageFolder
    from facerec.data.writers import write_dataset

    lfw = SHARED / "lfw" / "lfw-aligned-112x112"
    out = tmp / "faces"
    if lfw.is_dir():
        src = ImageFolder(lfw)
        out.mkdir()
        for i in range(n):  # the first n files, copied byte for byte
            rel = Path(src.relpaths[i])
            (out / rel.parent).mkdir(exist_ok=True)
            (out / rel).write_bytes(src.read_raw(i))
        return out, "LFW aligned 112x112 JPEG"
    import facerec

    synth = facerec.create("dataset", "synthetic", num_ids=max(1, n // 10), per_id=10, image_size=112)
    write_dataset(synth, out, "folder", quality=95)
    return out, "synthetic 112x112 JPEG q95"


def _baseline_epoch(paths: list[str]) -> int:
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    n = 0
    for lo in range(0, len(paths), BATCH):
        batch = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths[lo:lo + BATCH]])
        n += len(batch)
    return n


def _facerec_epoch(ds) -> int:
    n = 0
    for lo in range(0, len(ds), BATCH):
        n += len(ds.batch(range(lo, min(lo + BATCH, len(ds))))["image"])
    return n


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    n = fn(*args)
    return n / (time.perf_counter() - t)


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(1)
    from facerec.data.formats import ImageFolder, LMDBDataset
    from facerec.data.writers import write_dataset

    n = 1024 if quick else 6144
    repeats = 3 if quick else 5
    records = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, what = _faces(tmp, n)
        src = ImageFolder(folder)
        t = time.perf_counter()
        write_dataset(src, tmp / "faces.lmdb", "lmdb")
        convert_s = time.perf_counter() - t
        lmdb_ds = LMDBDataset(tmp / "faces.lmdb")
        paths = list(src.paths)
        _baseline_epoch(paths[:BATCH])  # warm-up: imports, page cache, decoder init
        _facerec_epoch(lmdb_ds)
        ours, base = [], []
        for _ in range(repeats):  # interleaved so load changes hit both alike
            base.append(_timed(_baseline_epoch, paths))
            ours.append(_timed(_facerec_epoch, lmdb_ds))
        o, b = statistics.median(ours), statistics.median(base)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records.append({
            "name": "load_jpeg_faces_lmdb_vs_pil_folder", "measured": f"{n} {what}, batches of {BATCH}, 1 thread",
            "facerec_items_per_s": round(o, 1), "baseline_items_per_s": round(b, 1), "ratio": round(o / b, 2),
            "peak_mem_mb": round(peak, 1),
            "notes": f"medians of {repeats} interleaved epochs; baseline = PIL open/convert + to_tensor per file",
        })
        records.append({
            "name": "convert_folder_to_lmdb", "measured": f"{n} JPEGs copied into the Vec2Face LMDB layout",
            "facerec_items_per_s": round(n / convert_s, 1), "baseline_items_per_s": None, "ratio": None,
            "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "notes": "bytes copied (no re-encode), each image decoded once to validate it; fsync per chunk",
        })
    return records


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
