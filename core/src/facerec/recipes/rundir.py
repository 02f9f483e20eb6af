"""A run's output folder: JSON, Markdown, pictures and safetensors, each written to a temporary name and
renamed into place, and under torchrun by rank 0 alone."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..engine.checkpoint import checkpoint_path
from ..errors import FacerecError
from .summary import markdown_table


def main_process() -> bool:
    from ..engine.distributed import is_main_process

    return is_main_process()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return str(value)


@attrs.define
class RunDir:
    """A run's output folder. Every write goes to a temporary name first and is renamed into place.

    ``headline``: a few lines a recipe sets to end the run's console output with (its verdict); without
    one, ``facerun`` prints every final metric."""

    path: Path = attrs.field(converter=Path)
    headline: str = ""

    def __attrs_post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _atomic(self, name: str, data: bytes) -> Path:
        target = self.file(name)
        if not main_process():  # under torchrun rank 0 alone writes the run's reports
            return target
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self._atomic(name, text.encode("utf-8"))

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        target = self.path / name
        if not target.is_file():
            return default
        try:
            return json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise FacerecError(f"{target}: not valid JSON ({exc.msg}, line {exc.lineno})") from None

    def write_markdown(
        self,
        name: str,
        title: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]] | str] | None = None,
        text: str = "",
    ) -> Path:
        """A markdown page: ``# title``, free text, then one section per ``{caption: rows}`` (a table, or
        markdown text when the value is a string)."""
        parts = [f"# {title}", ""]
        if text:
            parts += [text.rstrip(), ""]
        for caption, rows in (tables or {}).items():
            parts += [f"## {caption}", "", rows.rstrip() if isinstance(rows, str) else markdown_table(rows), ""]
        return self.write_text(name, "\n".join(parts))

    def save_png(self, name: str, image: Any) -> Path:
        """Save a matplotlib figure, a ``[3,H,W]``/``[H,W,3]`` float tensor in [0,1], or an image grid."""
        buf = io.BytesIO()
        if hasattr(image, "savefig"):
            image.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        else:
            import numpy as np
            import torch
            from PIL import Image

            arr = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
            if arr.dim() == 4:
                arr = image_grid(arr)
            if arr.dim() == 3 and arr.shape[0] in (1, 3):
                arr = arr.permute(1, 2, 0)
            arr = arr.float()
            if arr.max() > 1.0:
                arr = arr / 255.0
            data = (arr.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(-1).numpy()
            Image.fromarray(data).save(buf, format="PNG")
        return self._atomic(name, buf.getvalue())

    def save_safetensors(
        self, name: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
    ) -> Path:
        from ..engine.checkpoint import atomic_save

        target = self.file(name)
        if not main_process():
            return target
        atomic_save(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, target, dict(metadata) if metadata else None
        )
        return target

    def checkpoint(self, stage: str = "train", which: str = "last") -> Path:
        """Where the Trainer named ``stage`` keeps its checkpoint in this run."""
        return checkpoint_path(self.path, stage, which)


def image_grid(images: Any, nrow: int = 8) -> Any:
    """``[N,C,H,W]`` -> one ``[C, rows*H, nrow*W]`` grid (vectorised)."""
    import torch

    n, c, h, w = images.shape
    nrow = min(nrow, n)
    rows = math.ceil(n / nrow)
    pad = images.new_zeros((rows * nrow - n, c, h, w))
    full = torch.cat([images, pad]).reshape(rows, nrow, c, h, w)
    return full.permute(2, 0, 3, 1, 4).reshape(c, rows * h, nrow * w)


def save_backbone(run: RunDir, backbone: Any, name: str = "backbone.safetensors") -> Path:
    """The trained backbone alone (a plain state dict; ``facerec.load_weights`` / ``facerun eval`` read it)."""
    return run.save_safetensors(name, backbone.state_dict(), {"format": "pt"})


__all__ = ["RunDir", "image_grid", "main_process", "save_backbone"]
