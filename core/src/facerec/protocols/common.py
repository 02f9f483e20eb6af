"""Shared helpers of the evaluation protocols: image paths, missing files, batched decoding with a
prefetch thread, embedding with progress, and precomputed feature tables (safetensors; defined in
features.py, which describes the file, and importable from here).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .features import MAX_LISTED, FeatureTable, gather_features, load_features, save_features

if TYPE_CHECKING:
    from ..data.align import TemplateWarp


# ------------------------------------------------------------------------------------------ progress


class Progress:
    """A one-line progress bar on stderr with items/s and ETA (silent when disabled)."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True, stream=None):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.2 and self.done < self.total:
            return
        self._last = now
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self.stream.write(
            f"\r{self.desc} {self.done}/{self.total} ({pct:5.1f}%) {rate:,.1f} items/s"
            + (f" ETA {eta:,.0f}s" if self.done < self.total and eta != float("inf") else "")
            + "  "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------- paths, files


def find_missing(paths: Sequence[Path]) -> list[int]:
    """Indices of paths that are not files."""
    return [i for i, p in enumerate(paths) if not os.path.isfile(p)]


def check_missing(paths: Sequence[Path], *, skip_missing: bool, what: str = "images") -> np.ndarray:
    """A boolean 'present' mask; without ``skip_missing`` any missing file is an error listing the first ones."""
    missing = find_missing(paths)
    present = np.ones(len(paths), dtype=bool)
    present[missing] = False
    if missing and not skip_missing:
        first = ", ".join(str(paths[i]) for i in missing[:MAX_LISTED])
        more = f" (and {len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        raise DataError(
            f"{len(missing)} of {len(paths)} {what} are missing: {first}{more}; "
            "pass skip_missing=True (--skip-missing) to evaluate without them"
        )
    return present


def read_text_lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def image_size_for(model: Any, image_size: int | None) -> int:
    """The canonical image side to load: explicit, else the backbone's input spec, else 112."""
    if image_size is not None:
        return int(image_size)
    spec = getattr(model, "input_spec", None)
    return int(spec.canonical_size) if spec is not None else 112


# ------------------------------------------------------------------------------- templates, warping

_SAID: set[str] = set()


def say_once(message: str) -> None:
    """A note on stderr, once per process (the pipeline's word on what it does to the images)."""
    if message not in _SAID:
        _SAID.add(message)
        sys.stderr.write(f"facerec: {message}\n")
        sys.stderr.flush()


@attrs.frozen
class InputPlan:
    """How stored images reach a model: the side they are decoded at, and the warp from the data's
    alignment template to the model's (None where they agree or nothing is known)."""

    load_size: int
    warp: TemplateWarp | None = None
    data_template: str | None = None
    model_template: str | None = None

    def apply(self, batches: Iterable[Tensor]) -> Iterable[Tensor]:
        return batches if self.warp is None else (self.warp(b) for b in batches)

    def record(self) -> dict[str, str]:
        """What a report or feature file says about the images' geometry."""
        return {
            "data_template": self.data_template or "(not declared)",
            "model_template": self.model_template or "",
            "load_size": str(self.load_size),
            "warp": self.warp.describe() if self.warp is not None else "none",
        }


def plan_input(model: Any, image_size: int | None = None, data_template: str | None = None) -> InputPlan:
    """Decide how images aligned to ``data_template`` are fed to ``model``: decoded at ``image_size``
    (default: what the warp or the model needs) and, where the model's input spec names another
    template, warped to it with one similarity transform (said once on stderr). An unknown template
    on either side is a one-line error; undeclared data is resized as it is, and that is said too."""
    from ..data.align import get_template, template_warp

    spec = getattr(model, "input_spec", None)
    if spec is None:  # a plain embedder: nothing to derive from
        return InputPlan(image_size_for(model, image_size), None, data_template)
    target = spec.alignment()
    size = image_size_for(model, image_size)
    if data_template is None:
        say_once(
            f"the data declares no alignment template: images are resized to {size} px as they are, which "
            f"is right only if they are aligned to {target.name} (the model's); declare the data's template "
            "(--data-template) to have them warped"
        )
        return InputPlan(size, None, None, target.name)
    source = get_template(data_template)
    warp = template_warp(source, target, spec.canonical_size, load_size=image_size)
    if warp is None:
        return InputPlan(size, None, source.name, target.name)
    say_once(f"{type(model).__name__} takes {target.name} chips: {warp.describe()}")
    return InputPlan(warp.load_size, warp, source.name, target.name)


# ------------------------------------------------------------------------------------------ decoding


def load_image(path: Path, image_size: int | None) -> Tensor:
    from ..data.decode import read_image

    return read_image(path, image_size)


def iter_image_batches(
    paths: Sequence[Path],
    *,
    image_size: int | None,
    batch_size: int,
    loader: Callable[[Path, int | None], Tensor] = load_image,
    prefetch: int = 2,
) -> Iterator[Tensor]:
    """Decode images in batches on a background thread (decoders release the GIL), in order."""
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def work() -> None:
        try:
            for i in range(0, len(paths), batch_size):
                if stop.is_set():
                    return
                q.put(torch.stack([loader(p, image_size) for p in paths[i : i + batch_size]]))
        except BaseException as exc:  # surfaced in the consumer
            q.put(exc)
            return
        q.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def embed_images(
    model: Any,
    batches: Iterable[Tensor],
    total: int,
    *,
    device: str = "cpu",
    flip: bool = False,
    progress: bool = False,
    desc: str = "embedding",
    optimize: bool = True,
    plan: InputPlan | None = None,
) -> Tensor:
    """Embed canonical image batches with the fast inference path; float32 [N, D] on CPU.
    With ``plan``, each batch is first warped to the model's template (see :func:`plan_input`)."""
    from ..inference import embed_batches, optimize_for_inference

    bar = Progress(total, desc, enabled=progress)

    def counted() -> Iterator[Tensor]:
        for b in plan.apply(batches) if plan is not None else batches:
            yield b
            bar.update(len(b))

    ready = not optimize or not isinstance(model, torch.nn.Module) or getattr(model, "facerec_optimized", False)
    fast = model if ready else optimize_for_inference(model, device=device)
    try:
        return embed_batches(fast, counted(), device=device, flip=flip)
    finally:
        bar.close()


def embed_paths(
    model: Any,
    paths: Sequence[Path],
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    flip: bool = False,
    progress: bool = False,
    desc: str = "embedding",
    data_template: str | None = None,
) -> Tensor:
    """Read, decode and embed image files in order (warped from ``data_template`` to the model's
    template where they differ); returns [len(paths), D]."""
    plan = plan_input(model, image_size, data_template)
    batches = iter_image_batches(paths, image_size=plan.load_size, batch_size=batch_size)
    return embed_images(model, batches, len(paths), device=device, flip=flip, progress=progress, desc=desc, plan=plan)


__all__ = [
    "Progress",
    "image_size_for",
    "InputPlan",
    "plan_input",
    "load_image",
    "iter_image_batches",
    "embed_images",
    "embed_paths",
    "FeatureTable",
    "save_features",
    "load_features",
    "gather_features",
    "check_missing",
    "find_missing",
    "read_text_lines",
]
