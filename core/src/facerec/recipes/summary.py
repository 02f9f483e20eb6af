"""What a run reports in words: ``summary.md`` (setup, tables, metrics), Markdown tables and the metrics
``facerun`` prints at the end."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PipelineConfig
    from .rundir import RunDir


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts -> a markdown table (columns in first-seen order)."""
    if not rows:
        return "(none)"
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |" for row in rows]
    return "\n".join(lines)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The final metrics as aligned ``name  value`` lines (nested results left to metrics.json)."""
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    width = max((len(k) for k in flat), default=0)
    return "\n".join(f"{k:<{width}}  {_fmt(v)}" for k, v in flat.items())


def write_summary(
    run: RunDir,
    config: PipelineConfig,
    metrics: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]] | str] | None = None,
    text: str = "",
    setup: Sequence[Mapping[str, Any]] | None = None,
    title: str = "",
) -> Path:
    """``summary.md``: what was run and the metrics (plus optional tables).

    ``setup`` rows (e.g. one per stage: data, identities, images, steps, image size, wall time) follow
    the run's own setup row; names a recipe resolved (its default dataset and protocols) belong in
    ``config`` before this is called, so that the table never shows "-" for what was used."""
    run_row = [
        {
            "backbone": config.backbone,
            "head": config.head or "-",
            "generator": config.generator or "-",
            "dataset": config.dataset or "-",
            "protocols": ", ".join(config.protocols) or "-",
            "recipe": config.recipe + (f" / {config.stage}" if config.stage else ""),
            "preset": config.preset,
            "seed": config.seed,
            "device": config.device,
        }
    ]
    flat = [
        {"metric": k, "value": v} for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    stages = {"Stages": list(setup)} if setup else {}
    all_tables = {"Setup": run_row, **stages, **(tables or {}), "Metrics": flat}
    return run.write_markdown("summary.md", title or f"facerec run {run.path.name}", all_tables, text)


__all__ = ["format_metrics", "markdown_table", "write_summary"]
