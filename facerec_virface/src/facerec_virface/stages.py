"""The four VirFace training stages on core's Trainer: pretrain, generator, virclass, virface.

Losses and weights follow the repository (KL as the mean over all elements, MSE weight 5e3, KL weight 2),
without its defects: the generator stage trains the generator alone with the backbone and head frozen under
no_grad (the original computed and dropped their gradients), the MSE weight is the one given (the original
read a missing ``args.MSE`` and crashed), and stage checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.engine import TrainConfig, Trainer, random_flip
from facerec.errors import FacerecError

from .data import MergedBatches
from .generator import VirFaceGenerator
from .heads import VirFaceArcFace, VirInstanceHead

STAGES = ("pretrain", "generator", "virclass", "virface")


@attrs.define(kw_only=True)
class StageSettings:
    """Knobs shared by the stages (names as the original's CLI where one exists)."""

    unlabel_batch_size: int = 32  # B_u (the labelled batch is train.batch_size)
    gen_num: int = 5
    mse_weight: float = 5e3  # --L2
    kl_weight: float = 2.0  # --KL
    flip: bool = True


def _embed(backbone: nn.Module, spec: Any, images: Tensor, flip: bool) -> Tensor:
    images = images.float()
    if flip:
        images = random_flip(images)
    return backbone(spec.prepare(images))


def _acc(logits: Tensor | None, labels: Tensor) -> Tensor | None:
    if logits is None or not len(labels):
        return None
    return (logits.detach().argmax(1) == labels).float().mean()


def epoch_batches(labelled: Any, unlabelled: Any | None, b_l: int, b_u: int) -> int:
    """Batches in one epoch, as the original's loaders (drop_last): the labelled list alone, or with
    unlabelled data BatchMergeDatasetSampler's longer of the two (the shorter one restarts)."""
    n = len(labelled) // b_l
    if unlabelled is not None:
        n = max(n, len(unlabelled) // b_u)
    return max(1, n)


def run_stage(
    stage: str,
    *,
    backbone: nn.Module,
    head: VirFaceArcFace,
    generator: VirFaceGenerator | None,
    labelled: Any,
    unlabelled: Any | None,
    config: TrainConfig,
    settings: StageSettings,
    run_dir: str | Path | None = None,
    evaluators: Sequence | Mapping = (),
    resume: bool = False,
) -> dict[str, Any]:
    """Train one stage in place (modules are updated) and return the Trainer's final metrics."""
    if stage not in STAGES:
        raise FacerecError(f"unknown VirFace stage {stage!r}; stages: {', '.join(STAGES)}")
    spec = backbone.input_spec
    s = settings
    needs_unlabelled = stage in ("virclass", "virface")
    if needs_unlabelled and unlabelled is None:
        raise FacerecError(f"stage {stage!r} needs an unlabelled dataset")
    if stage in ("generator", "virface") and generator is None:
        raise FacerecError(f"stage {stage!r} needs the VirFace generator")
    batches = MergedBatches(
        labelled, unlabelled if needs_unlabelled else None, config.batch_size, s.unlabel_batch_size, seed=config.seed
    )
    if stage == "generator":
        # Backbone and head stay frozen in eval mode; only the generator sees gradients.
        backbone.eval().requires_grad_(False)
        head.eval().requires_grad_(False)

        def loss_fn(batch, modules, step):
            with torch.no_grad():
                f = backbone(spec.prepare(batch["image"].float()))
                target = head.weight[batch["label"]]
            mse, kl, rec = modules["generator"].losses(f, target)
            with torch.no_grad():
                gen_acc = (F.linear(rec, F.normalize(head.weight)).argmax(1) == batch["label"]).float().mean()
            return {
                "loss": s.mse_weight * mse + s.kl_weight * kl,
                "mse": mse.detach(),
                "kl": kl.detach(),
                "gen_acc": gen_acc,
            }

        modules: dict[str, nn.Module] = {"generator": generator}
        evaluators = ()
    elif stage == "virface":
        if not isinstance(head, VirInstanceHead):
            raise FacerecError("stage 'virface' needs the virinstance head")

        def loss_fn(batch, modules, step):
            labels = batch["label"]
            emb = _embed(modules["backbone"], spec, batch["image"], s.flip)
            known = labels >= 0
            f_l, y, f_u = emb[known], labels[known], emb[~known]
            gen = modules["generator"]
            generated = gen.augment(F.normalize(f_u.detach()), s.gen_num)
            out = modules["head"](f_l, y, unlabeled=f_u, generated=generated)
            # the generator is fed detached features; the class weights W[y] are NOT detached (as the original)
            mse, kl, _ = gen.losses(f_l.detach(), head.weight[y])
            loss = out.loss + s.mse_weight * mse + s.kl_weight * kl
            logs = {
                "loss": loss,
                "mse": mse.detach(),
                "kl": kl.detach(),
                "loss_instance": out.extras.get("loss_instance", torch.zeros(())),
            }
            acc = _acc(out.logits, y)
            if acc is not None:
                logs["acc"] = acc
            return logs

        modules = {"backbone": backbone, "head": head, "generator": generator}
    else:  # pretrain / virclass: labelled ArcFace, plus virtual classes from the unlabelled rows

        def loss_fn(batch, modules, step):
            labels = batch["label"]
            emb = _embed(modules["backbone"], spec, batch["image"], s.flip)
            if stage == "virclass":
                out = modules["head"](emb, labels)  # rows with label -1 become virtual classes
            else:
                out = VirFaceArcFace.forward(modules["head"], emb, labels)
            logs = {"loss": out.loss}
            acc = _acc(out.logits, labels[labels >= 0])
            if acc is not None:
                logs["acc"] = acc
            return logs

        modules = {"backbone": backbone, "head": head}
    try:
        trainer = Trainer(
            modules,
            loss_fn,
            batches,
            config,
            run_dir=run_dir,
            evaluators=evaluators,
            resume=True if resume else None,
            local_batches=False,
            name=stage,
            num_samples=epoch_batches(
                labelled, unlabelled if needs_unlabelled else None, config.batch_size, s.unlabel_batch_size
            )
            * config.batch_size,
        )
        return trainer.fit()
    finally:
        backbone.requires_grad_(True)
        head.requires_grad_(True)
