"""Random-access batch reading of the same 112x112 JPEG faces from an insightface RecordIO set (``.rec``
+ ``.idx``, facerec's pure-Python reader), from LMDB and from an image folder, 2 threads.

All three go through ``dataset.batch(indices)`` (read the stored bytes, libjpeg-turbo decode, channels-
last float batch): RecordIO reads each record with one ``pread`` on a shared descriptor, LMDB one
lookup in a shared read-only environment, the folder one file open per image. Indices are a fixed
random permutation (training order), cut into batches of 64 that two threads take in turn; page cache
warm; interleaved repeats, medians. Uses the real LFW faces from ../shared/data when present.

Run: ``python benchmarks/bench_recordio.py [--full]`` (prints JSON records).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.bench_data import _faces
    from benchmarks.common import main, peak_rss_mb
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_data import _faces
    from benchmarks.common import main, peak_rss_mb

BATCH = 64
THREADS = 2


def _epoch(ds, batches: list[list[int]]) -> int:
    with ThreadPoolExecutor(THREADS) as pool:
        return sum(len(b["image"]) for b in pool.map(ds.batch, batches))


def _raw_epoch(ds, batches: list[list[int]]) -> int:
    """The stored bytes only (no decode): what each format costs to reach a record."""
    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(lambda b: sum(len(ds.read_raw(i)) for i in b), batches))


def _rounds(readers: dict, fn, batches: list[list[int]], repeats: int) -> dict[str, list[float]]:
    for ds in readers.values():  # warm-up: page cache, decoder, thread pool
        fn(ds, batches)
    times: dict[str, list[float]] = {k: [] for k in readers}
    for _ in range(repeats):
        for name, ds in readers.items():
            t0 = time.perf_counter()
            fn(ds, batches)
            times[name].append(time.perf_counter() - t0)
    return times


def _record(name: str, measured: str, n: int, times: dict[str, list[float]], load_before, notes: str) -> dict:
    rates = {k: n / statistics.median(v) for k, v in times.items()}
    ratio = {
        f"rec_vs_{k}": statistics.median(b / a for a, b in zip(times["rec"], times[k])) for k in ("lmdb", "folder")
    }
    return {
        "name": name,
        "measured": measured,
        "images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "facerec_items_per_s": rates["rec"],
        "baseline_items_per_s": rates["lmdb"],
        "ratio": ratio["rec_vs_lmdb"],
        **{k: round(v, 3) for k, v in ratio.items()},
        "peak_mem_mb": round(peak_rss_mb(), 1),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "notes": notes,
    }


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(1)  # each reading thread converts its own batch
    from facerec.data.formats import ImageFolder, LMDBDataset
    from facerec.data.recordio_dataset import RecordIODataset
    from facerec.data.writers import write_dataset

    n = 1024 if quick else 6144
    repeats = 5 if quick else 9
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, what = _faces(tmp, n)
        src = ImageFolder(folder)
        write_dataset(src, tmp / "faces.lmdb", "lmdb")
        write_dataset(src, tmp / "faces.rec", "rec")
        readers = {"rec": RecordIODataset(tmp / "faces.rec"), "lmdb": LMDBDataset(tmp / "faces.lmdb"), "folder": src}
        assert all(readers["rec"].read_raw(i) == src.read_raw(i) for i in range(0, n, 97))  # the same bytes
        order = np.random.default_rng(0).permutation(n).tolist()
        batches = [order[i : i + BATCH] for i in range(0, n, BATCH)]
        times = _rounds(readers, _epoch, batches, repeats)
        raw_times = _rounds(readers, _raw_epoch, batches, repeats)
    what_n = f"{n} {what}, random order, batches of {BATCH}, {THREADS} threads, one process"
    return [
        _record(
            "read_random_batches_rec_vs_lmdb_vs_folder",
            what_n,
            n,
            times,
            load_before,
            "dataset.batch on each format (read + libjpeg-turbo decode + channels-last float batch); ratio = "
            "time of the other format / time of .rec per round, median over interleaved rounds",
        ),
        _record(
            "read_random_records_rec_vs_lmdb_vs_folder",
            what_n + ", stored bytes only",
            n,
            raw_times,
            load_before,
            "dataset.read_raw per index (no decode): the cost of reaching a record in each format; ratio as above",
        ),
    ]


if __name__ == "__main__":
    main(run)
