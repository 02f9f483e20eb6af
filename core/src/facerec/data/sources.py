"""A dataset on disk as ``facerun extract`` reads it: the reader for whichever format PATH is, with each
sample's key (what a feature file is indexed by), and its canonical images in batches decoded on a
background thread while the model embeds the previous batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError


def open_with_keys(path: str, image_size: int | None, params: dict[str, Any]) -> tuple[Any, list[str]]:
    """A dataset reader for PATH (whatever :func:`~facerec.data.formats.open_dataset` opens: LMDB, RecordIO,
    image list or image folder; also a flat folder of images, one unlabelled item per file) and each sample's
    key (LMDB record / RecordIO index / relative path)."""
    from .formats import detect_format, open_dataset

    p = Path(path)
    if not p.exists():
        raise DataError(f"--data: not found: {p}")
    if p.name == "data.mdb":  # the LMDB's data file given for its folder
        p = p.parent
    fmt = detect_format(p)
    flat = fmt == "folder" and not any(d.is_dir() for d in p.iterdir() if not d.name.startswith("."))
    if flat and "label_pattern" not in params:
        # a flat folder of images (e.g. reference faces): one item per file, no identity labels
        ds: Any = open_dataset(p, image_size=image_size, label_pattern=r"[^/]+$", **params)
        ds.unlabelled = True
    else:
        ds = open_dataset(p, image_size=image_size, **params)
    if fmt == "rec":
        return ds, [str(int(k)) for k in ds.keys]
    if fmt == "lmdb":
        return ds, [str(ds.record(i)) for i in range(len(ds))]
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
