"""Evaluating a trained backbone with a run's protocols: flat metrics, artefacts in ``eval/`` and ROC
curves in ``pictures/`` (drawn by :mod:`facerec.reports`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .rundir import RunDir, main_process


def evaluate_protocols(
    protocols: Mapping[str, Any], backbone: Any, *, device: str = "cpu", run: RunDir | None = None, tag: str = ""
) -> dict[str, float]:
    """Evaluate a backbone with each protocol; flat ``{"protocol/metric": value}``. With ``run``,
    artefacts go to ``eval/<tag><protocol>.json`` and ROC curves (when present) to pictures/."""
    import torch

    from .. import reports

    metrics: dict[str, float] = {}
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for name, proto in protocols.items():
                result = proto.evaluate(backbone, device=device)
                for k, v in result.metrics.items():
                    metrics[f"{name}/{k}"] = float(v)
                if run is None:
                    continue
                run.write_json(
                    f"eval/{tag}{name}.json",
                    {"metrics": dict(result.metrics), "convention": result.convention, "artefacts": result.artefacts},
                )
                curve = reports.roc_points(result.artefacts)
                if curve is not None and main_process() and reports.have_matplotlib():
                    reports.plot_roc({name: curve}, run.file(f"pictures/{tag}{name}-roc.png"), f"ROC {name}")
    finally:
        backbone.train(was)
    return metrics


__all__ = ["evaluate_protocols"]
