"""The runner behind ``facerun --backbone B [...]`` and ``facerun train``: check everything, claim the run
directory, run the recipe, write ``config.json``, ``metrics.json`` and ``summary.md``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import FacerecError
from .checks import resolve_recipe, validate
from .config import PipelineConfig, parse_params
from .rundir import RunDir, main_process
from .summary import format_metrics, write_summary


def _fresh_run_path() -> Path:
    """``runs/<time>``, with a counter when a run started in the same second already took it."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_pipeline(
    *,
    backbone: str,
    head: str | None = None,
    generator: str | None = None,
    dataset: str | None = None,
    protocol: Sequence[str] = (),
    preset: str = "quick",
    out: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    params: Sequence[str] = (),
    recipe: str | None = None,
    stage: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    resume_option: str | None = "--resume",
    echo: Callable[[str], Any] | None = print,
) -> dict[str, Any]:
    """Validate, claim the run directory, run the recipe, write config/metrics/summary; return metrics.

    An existing run in ``out`` is continued only with ``resume`` and replaced only with ``overwrite``
    (see :func:`facerec.outputs.claim_run_dir`); ``resume_option`` is how the caller spells resuming."""
    from ..outputs import check_writable_dir, claim_run_dir, unclaim_if_untouched

    parsed = parse_params(params)
    for kind, name in (("backbone", backbone), ("head", head), ("generator", generator), ("dataset", dataset)):
        if name:
            registry.find(kind, name)
    chosen = resolve_recipe(recipe, backbone, generator)
    run_path = Path(out) if out else _fresh_run_path()
    check_writable_dir(run_path, "--out")
    if resume and not any((run_path / n).is_file() for n in ("config.json", f"config.{stage}.json")):
        raise FacerecError(f"--resume: {run_path} holds no earlier run (no config.json)")
    config = PipelineConfig(
        backbone=backbone,
        head=head,
        generator=generator,
        dataset=dataset,
        protocols=tuple(protocol),
        preset=preset,
        seed=seed,
        device=device,
        recipe=chosen,
        stage=stage,
        resume=resume,
        out=str(run_path),
        params=parsed,
    )
    spec, recipe_params = validate(config)
    created = not run_path.exists()
    claim_run_dir(run_path, stage=stage, resume=resume, overwrite=overwrite, resume_option=resume_option)
    before = set(run_path.rglob("*"))
    run = RunDir(run_path)
    config_name = "config.json" if stage is None else f"config.{stage}.json"
    config_file = run.write_json(config_name, config.to_dict())
    t0, started = time.perf_counter(), time.time() - 1.0
    try:
        metrics = dict(spec(config, run, recipe_params) or {})
    except FacerecError:
        if not resume:  # refused before producing anything: leave no run behind to refuse next time
            unclaim_if_untouched(run_path, before, {config_file}, created)
        raise
    metrics.setdefault("seconds", round(time.perf_counter() - t0, 2))
    run.write_json(config_name, config.to_dict())  # resolved
    if stage is not None:
        merged = run.read_json("metrics.json", {}) or {}
        merged[stage] = metrics
        run.write_json("metrics.json", merged)
    else:
        run.write_json("metrics.json", metrics)
    summary = run.path / "summary.md"
    if not summary.is_file() or summary.stat().st_mtime < started:
        write_summary(run, config, metrics)
    if echo is not None and main_process():  # one summary on the terminal under torchrun, not one per rank
        echo(run.headline.rstrip() if run.headline else format_metrics(metrics))
        echo(
            f"run directory: {run.path}"
            + (" (all metrics in metrics.json, the report in summary.md)" if run.headline else "")
        )
    return metrics


__all__ = ["run_pipeline"]
