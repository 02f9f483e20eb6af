"""A dataset on disk as ``facerun extract`` reads it: the reader for whichever format PATH is, with each
sample's key (what a feature file is indexed by), and its canonical images in batches decoded on a
background thread while the model embeds the previous batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError


def open_with_keys(path: str, image_size: int | None, params: dict[str, Any]) -> tuple[Any, list[str]]:
    """A dataset reader for PATH (LMDB, RecordIO .rec, image list file or image folder) and each sample's key."""
    from .formats import ImageFolder, ImageList, LMDBDataset

    p = Path(path)
    if not p.exists():
        raise DataError(f"--data: not found: {p}")
    if p.suffix == ".rec" or (p.is_dir() and (p / "train.rec").is_file()):  # insightface RecordIO
        from .recordio_dataset import RecordIODataset

        rec = RecordIODataset(p, image_size=image_size, **params)
        return rec, [str(int(k)) for k in rec.keys]
    if (p.is_dir() and (p / "data.mdb").is_file()) or p.suffix == ".lmdb" or p.name == "data.mdb":
        db = LMDBDataset(p.parent if p.name == "data.mdb" else p, image_size=image_size, **params)
        return db, [str(db.record(i)) for i in range(len(db))]
    ds: ImageList | ImageFolder
    if p.is_file():
        ds = ImageList(p, image_size=image_size, **params)
    elif "label_pattern" not in params and not any(d.is_dir() for d in p.iterdir() if not d.name.startswith(".")):
        # a flat folder of images (e.g. reference faces): one item per file, no identity labels
        ds = ImageFolder(p, image_size=image_size, label_pattern=r"[^/]+$", **params)
        ds.unlabelled = True
    else:
        ds = ImageFolder(p, image_size=image_size, **params)
    return ds, [r.replace("\\", "/") for r in ds.relpaths]


def image_batches(ds: Any, batch_size: int) -> Iterator[Any]:
    """Batches of canonical images decoded on a background thread (in order)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def work() -> None:
        try:
            for s in range(0, len(ds), batch_size):
                if stop.is_set():
                    return
                q.put(ds.batch(range(s, min(s + batch_size, len(ds))))["image"])
        except BaseException as exc:
            q.put(exc)
            return
        q.put(None)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


__all__ = ["image_batches", "open_with_keys"]
