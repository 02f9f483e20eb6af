"""Evaluation of the dvg recipe's models (the face model and every fine-tuning) on held-out identities:
images rendered once for all models, the comparison with bootstrap errors from the first protocol that
exposes its score matrix, and the same faces with VIS probes as the control."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from facerec.recipes import RunDir, canonical_size
from torch import Tensor

from . import report as R
from .stats import ProbeScores


def _embed_all(models: Mapping[str, Any], images: Tensor, device: str, flip: bool) -> dict[str, Tensor]:
    from facerec.inference import embed_tensor

    return {arm: embed_tensor(m, images, device=device, flip=flip) for arm, m in models.items()}


def evaluate_models(
    protocols: Mapping[str, Any], face: Any, tuned: Mapping[str, list[Any]], device: str, run: RunDir
) -> tuple[dict[str, float], R.Comparison | None, list[dict[str, Any]]]:
    """Every model on every protocol. Protocols that render their images (the synthetic ones) render
    them ONCE for all models; the first that exposes its score matrix gives the comparison with errors.
    Returns (flat metrics, the comparison, table rows for protocols without a score matrix)."""
    models: dict[str, Any] = {"face-model": face}
    for arm, runs in tuned.items():
        for k, m in enumerate(runs):
            models[f"{arm}#{k}"] = m
    for m in models.values():
        m.eval()
    metrics: dict[str, float] = {}
    comparison: R.Comparison | None = None
    rows: list[dict[str, Any]] = []
    for name, proto in protocols.items():
        if all(hasattr(proto, a) for a in ("images", "keys", "evaluate_features")):
            size = getattr(proto, "image_size", None) or canonical_size(face)
            images = torch.cat(
                [proto.images(range(s, min(s + 512, len(proto.keys))), size) for s in range(0, len(proto.keys), 512)]
            )
            feats = _embed_all(models, images, device, bool(getattr(proto, "flip", False)))
            results = {k: proto.evaluate_features(dict(zip(proto.keys, f))) for k, f in feats.items()}
        else:
            with torch.no_grad():
                results = {k: proto.evaluate(m, device=device) for k, m in models.items()}
        by_arm: dict[str, list[ProbeScores]] = {}
        for key, res in results.items():
            arm = key.split("#")[0]
            small = {k: v for k, v in res.artefacts.items() if k != "scores"}  # the score matrix is large
            run.write_json(
                f"eval/{key.replace('#', '-seed')}-{name}.json",
                {"metrics": dict(res.metrics), "convention": res.convention, "artefacts": small},
            )
            ps = R.protocol_probe_scores(proto, res.artefacts)
            if ps is not None:
                by_arm.setdefault(arm, []).append(ps)
            else:
                rows.append({"model": key, "protocol": name, **{k: float(v) for k, v in res.metrics.items()}})
            if key == "face-model" or "#" not in key or key.endswith("#0"):
                metrics.update({f"{arm}/{name}/{k}": float(v) for k, v in res.metrics.items()})
        if by_arm and comparison is None and {"with", "without"} <= set(by_arm):
            comparison = R.Comparison(protocol=name, runs=by_arm, gallery_size=int(proto.num_ids))
            comparison.vis_control = _vis_control(proto, models, device)
    return metrics, comparison, rows


def _vis_control(proto: Any, models: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The same held-out faces with VIS probes (the synthetic protocol's ``probe_modality="VIS"``):
    how good the face model is without the modality gap."""
    if getattr(proto, "probe_modality", None) != "NIR":
        return {}
    twin = copy.copy(proto)
    twin.probe_modality, twin._plan = "VIS", None
    size = getattr(twin, "image_size", None)
    images = torch.cat(
        [twin.images(range(s, min(s + 512, len(twin.keys))), size) for s in range(0, len(twin.keys), 512)]
    )
    keep = {k: m for k, m in models.items() if "#" not in k or k.endswith("#0")}
    feats = _embed_all(keep, images, device, bool(getattr(twin, "flip", False)))
    out = {}
    for key, f in feats.items():
        res = twin.evaluate_features(dict(zip(twin.keys, f)))
        ps = R.protocol_probe_scores(twin, res.artefacts)
        if ps is not None:
            out[key.split("#")[0]] = ps
    return out


__all__ = ["evaluate_models"]
