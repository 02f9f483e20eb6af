"""Data loading of 112x112 JPEG faces: facerec's LMDB pipeline vs the usual per-file PIL image folder.

facerec: ``LMDBDataset.batch`` (one read-only lock-free LMDB, libjpeg-turbo decode to uint8, the HWC
pixels stacked as a channels-last batch, one batched float conversion). Baseline: what most
face-recognition repos do (torchvision ImageFolder style): per file ``PIL.Image.open(path).convert("RGB")``
+ ``to_tensor`` + ``torch.stack``.
Both single process, page cache warm, same images, same batch size; interleaved repeats, medians.
Uses the real LFW faces from ../shared/data when present, else synthetic faces written as JPEG.

Run: ``python benchmarks/bench_data.py [--full]`` (prints JSON records).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

try:
    from benchmarks.common import SHARED, compare, main, record
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import SHARED, compare, main, record

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
        batch = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths[lo : lo + BATCH]])
        n += len(batch)
    return n


def _facerec_epoch(ds) -> int:
    n = 0
    for lo in range(0, len(ds), BATCH):
        n += len(ds.batch(range(lo, min(lo + BATCH, len(ds))))["image"])
    return n


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(1)
    from facerec.data.formats import ImageFolder, LMDBDataset
    from facerec.data.writers import write_dataset

    n = 1024 if quick else 6144
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, what = _faces(tmp, n)
        src = ImageFolder(folder)
        write_dataset(src, tmp / "faces.lmdb", "lmdb")
        lmdb_ds = LMDBDataset(tmp / "faces.lmdb")
        paths = list(src.paths)
        timing = compare(
            lambda: _facerec_epoch(lmdb_ds), lambda: _baseline_epoch(paths), items=n, repeats=5 if quick else 7
        )
        return [
            record(
                "load_jpeg_faces_lmdb_vs_pil_folder",
                f"{n} {what}, batches of {BATCH}, 1 thread, one process",
                timing,
                notes="facerec: LMDBDataset.batch; baseline: PIL open/convert + to_tensor per file "
                "+ stack (torchvision ImageFolder style); medians of interleaved epochs",
            )
        ]


if __name__ == "__main__":
    main(run)
