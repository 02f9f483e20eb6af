"""Face detection and alignment of raw photos: facerec's MTCNN vs facenet-pytorch's, and the whole
``facerun data align`` pipeline batched vs one photo at a time.

Detection: the same weights, the same images (a Yale face pasted on canvases of 320x240, 640x480 and
1280x960), batches of same-sized images, 2 threads. facerec: ``MTCNN().detect(uint8 batch)``;
baseline: facenet-pytorch 2.6.0's ``MTCNN(keep_all=True).detect(list of PIL images)`` (its detection
code loaded without its package ``__init__``); skipped when facenet-pytorch is not installed.
``FACEREC_BENCH_THREADS`` (default 2) sets the threads.
Pipeline: ``align_photos`` (decode, detect, align to arcface112, JPEG-encode, write LMDB) over a
folder of 640x480 photos, chunks of 32 vs chunks of 1.

Run: ``python benchmarks/bench_detect.py [--full]`` (prints JSON records).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

try:
    from benchmarks.common import SHARED, compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import SHARED, compare, main, record

THREADS = int(os.environ.get("FACEREC_BENCH_THREADS", "2"))


def _reference():
    """facenet-pytorch's MTCNN without its package __init__ (which needs requests), or None."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        return None
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules.setdefault("facenet_pytorch", pkg)
    return importlib.import_module("facenet_pytorch.models.mtcnn").MTCNN(keep_all=True)


def _photos(size: tuple[int, int], n: int) -> list[np.ndarray]:
    """n HWC uint8 photos of ``size`` (w, h), each a different Yale face on a textured background."""
    from PIL import Image

    faces = sorted((SHARED / "yalefaces").glob("subject*"))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        w, h = size
        canvas = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
        face = Image.open(faces[(7 * i) % len(faces)]).convert("RGB")
        scale = min(1.0, 0.8 * h / face.height, 0.8 * w / face.width)
        face = face.resize((int(face.width * scale), int(face.height * scale)))
        x, y = rng.integers(0, w - face.width + 1), rng.integers(0, h - face.height + 1)
        canvas[y : y + face.height, x : x + face.width] = np.asarray(face)
        out.append(canvas)
    return out


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(THREADS)
    from PIL import Image

    from facerec.data.detect import MTCNN
    from facerec.data.detect.released import installed_folder

    if installed_folder() is None or not (SHARED / "yalefaces").is_dir():
        return [
            record(
                "mtcnn_detect",
                "skipped: needs facenet-pytorch (weights) and ../shared/data/yalefaces",
                {"facerec_items_per_s": 0.0, "baseline_items_per_s": 0.0, "ratio": 0.0},
            )
        ]
    ours, ref = MTCNN(), _reference()
    records = []
    for size, batch in (((320, 240), 16), ((640, 480), 8), ((1280, 960), 4)):
        photos = _photos(size, batch)
        tensor = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2)
        pil = [Image.fromarray(p) for p in photos]
        timing = compare(
            lambda: ours.detect(tensor),
            (lambda: ref.detect(pil)) if ref else (lambda: None),
            items=batch,
            repeats=3 if quick else 7,
        )
        records.append(
            record(
                f"mtcnn_detect_{size[0]}x{size[1]}",
                f"batch of {batch} photos {size[0]}x{size[1]} (one Yale face each), {THREADS} threads",
                timing,
                notes="baseline: facenet-pytorch 2.6.0 MTCNN.detect on the same images, same weights"
                if ref
                else "facenet-pytorch not installed: no baseline",
            )
        )
    records.append(_pipeline(quick))
    return records


def _pipeline(quick: bool) -> dict:
    from PIL import Image

    from facerec.data.detect import MTCNN
    from facerec.data.raw_faces import align_photos

    n = 32 if quick else 128
    det = MTCNN()
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw"
        for i, photo in enumerate(_photos((640, 480), n)):
            folder = raw / f"id{i % 8}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo).save(folder / f"{i:04d}.jpg", quality=90)
        runs = {"batched": 0, "single": 0}

        def go(chunk: int) -> None:
            runs["batched" if chunk > 1 else "single"] += 1
            k = runs["batched" if chunk > 1 else "single"]
            align_photos(raw, Path(d) / f"out{chunk}_{k}.lmdb", "arcface112", det, chunk=chunk)

        timing = compare(lambda: go(32), lambda: go(1), items=n, repeats=2 if quick else 3)
    return record(
        "facerun_data_align_640x480",
        f"{n} photos 640x480 -> arcface112 LMDB (decode, detect, align, encode, write), {THREADS} threads",
        timing,
        notes="baseline: the same pipeline one photo per chunk (no batching)",
    )


if __name__ == "__main__":
    main(run)
