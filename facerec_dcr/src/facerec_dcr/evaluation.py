"""Low-resolution evaluation math shared by the protocols and the recipe.

Embeddings are computed once through the trunk; branch embeddings are the branch ``fc1`` (and
normalisation) applied to those trunk embeddings, so trunk and branches are scored side by side
at the cost of one trunk pass per image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from facerec.api import Backbone
from facerec.inference import as_embedder
from facerec.metrics import rank_k
from torch import Tensor

from .metrics import dcr_verification
from .model import _DCR

HR = "hr"


def is_dcr(model: object) -> bool:
    return isinstance(model, _DCR)


@torch.inference_mode()
def embed_all(model: Backbone, images: Tensor, *, batch_size: int = 64, device: str = "cpu") -> Tensor:
    """Trunk (or plain backbone) embeddings of canonical images, float32 on CPU."""
    fn = as_embedder(model)
    out = [fn(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0)


@torch.inference_mode()
def branch_map(model: _DCR, trunk_embeddings: Tensor, index: int, device: str = "cpu") -> Tensor:
    return model.branches[index](trunk_embeddings.to(device), with_logits=False)[0].float().cpu()


Images = Tensor | Mapping[str | int, Tensor]


def collect_pairs(
    model: Backbone,
    batches: Iterable[tuple[Images, Mapping[str | int, Tensor]]],
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[Tensor | dict[str | int, Tensor], dict[str | int, Tensor]]:
    """Embed (image 1, {key: image 2 at that resolution}) batches with the trunk. Image 1 is one HR batch
    (cross-resolution tasks), or a {key: batch} dict of its own resolutions (intra tasks)."""
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    first: dict[str | int, list[Tensor]] = {}
    second: dict[str | int, list[Tensor]] = {}
    single = False
    try:
        for img1, probes in batches:
            single = not isinstance(img1, Mapping)
            for key, img in ({None: img1} if single else img1).items():
                first.setdefault(key, []).append(embed_all(model, img, batch_size=batch_size, device=device))
            for key, img2 in probes.items():
                second.setdefault(key, []).append(embed_all(model, img2, batch_size=batch_size, device=device))
    finally:
        if was_training:
            model.train()
    refs = {k: torch.cat(v) for k, v in first.items()}
    return (refs[None] if single else refs), {k: torch.cat(v) for k, v in second.items()}


def criterion(metrics: Mapping[str, float], prefix: str, keys: Iterable[str | int]) -> float:
    """The original's early-stopping criterion: the mean of a metric over the evaluated resolutions."""
    return float(np.mean([metrics[f"{prefix}{k}"] for k in keys]))


def _cos(a: Tensor, b: Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy().astype(np.float32)


def verification_metrics(
    model: Backbone,
    emb1: Tensor | Mapping[str | int, Tensor],
    emb2: Mapping[str | int, Tensor],
    same: Tensor,
    *,
    n_folds: int = 10,
    device: str = "cpu",
) -> tuple[dict[str, float], dict]:
    """DCR 10-fold accuracy per resolution: HR image 1 vs image 2 at that resolution (task V), or, when
    ``emb1`` is a {key: embeddings} dict, image 1 and image 2 both at that resolution (task IV).

    Metrics ``acc_<key>`` (trunk) and, for DCR models, ``branch_acc_<key>`` (V: HR image 1 through the
    coupled HR branch, image 2 through the LR branch of its resolution; IV: both through the LR branch;
    for ``hr`` both through the shared HR branch). ``acc_mean``/``branch_acc_mean`` average the LR
    scales; ``criterion``/``branch_criterion`` are the original's early-stopping criterion (the mean
    over every evaluated key: the LR scales in V, the LR scales and HR in IV)."""
    intra = isinstance(emb1, Mapping)
    same_np = same.bool().numpy()
    metrics: dict[str, float] = {}
    folds: dict[str, list[float]] = {}
    thresholds: dict[str, list[float]] = {}

    def score(prefix: str, key: str | int, a: Tensor, b: Tensor) -> None:
        res = dcr_verification(_cos(a, b), same_np, n_folds)
        metrics[f"{prefix}acc_{key}"] = float(res.mean)
        metrics[f"{prefix}acc_std_{key}"] = float(res.std)
        metrics[f"{prefix}threshold_{key}"] = float(np.mean(res.fold_threshold))
        folds[f"{prefix}acc_{key}"] = [float(v) for v in res.fold_accuracy]
        thresholds[f"{prefix}acc_{key}"] = [float(v) for v in res.fold_threshold]

    scales = [k for k in emb2 if k != HR]
    evaluated = list(emb2) if intra else scales
    for key, e2 in emb2.items():
        score("", key, emb1[key] if intra else emb1, e2)
    if scales:
        metrics["acc_mean"] = criterion(metrics, "acc_", scales)
    if evaluated:
        metrics["criterion"] = criterion(metrics, "acc_", evaluated)
    if is_dcr(model):
        scored = []
        for key, e2 in emb2.items():
            if key == HR:
                if model.design != "shared":
                    continue
                hr = lr = 0
            else:
                hr, lr = model.hr_branch(int(key)), model.lr_branch(int(key))
            a = branch_map(model, emb1[key], lr, device) if intra else branch_map(model, emb1, hr, device)
            score("branch_", key, a, branch_map(model, e2, lr, device))
            scored.append(key)
        if scales:
            metrics["branch_acc_mean"] = criterion(metrics, "branch_acc_", scales)
        if any(k in scored for k in evaluated):
            metrics["branch_criterion"] = criterion(metrics, "branch_acc_", [k for k in evaluated if k in scored])
    return metrics, {"fold_accuracy": folds, "fold_threshold": thresholds}


def scface_metrics(
    model: Backbone,
    gallery: Tensor,
    gallery_labels: Tensor,
    probes: Mapping[int, tuple[Tensor, Tensor]],
    *,
    distance_scales: Mapping[int, int],
    device: str = "cpu",
) -> dict[str, float]:
    """Rank-1 per distance: mugshot gallery vs surveillance probes (trunk embeddings given).

    For DCR models also ``branch_rank1_d<D>``: gallery through the HR branch, probes through the LR
    branch of the scale assigned to distance D (the original: d1 -> 8 px, d2 -> 12, d3 -> 16)."""
    out: dict[str, float] = {}
    for d, (emb, labels) in sorted(probes.items()):
        out[f"rank1_d{d}"] = float(rank_k(gallery, gallery_labels, emb, labels, ks=(1,))[1])
        if is_dcr(model) and distance_scales.get(d) in model.scales:
            s = distance_scales[d]
            g = branch_map(model, gallery, model.hr_branch(s), device)
            p = branch_map(model, emb, model.lr_branch(s), device)
            out[f"branch_rank1_d{d}"] = float(rank_k(g, gallery_labels, p, labels, ks=(1,))[1])
    distances = sorted(probes)
    if distances:
        out["criterion"] = criterion(out, "rank1_d", distances)
        if all(f"branch_rank1_d{d}" in out for d in distances):
            out["branch_criterion"] = criterion(out, "branch_rank1_d", distances)
    return out
