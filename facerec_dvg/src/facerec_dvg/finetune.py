"""The recognition stages of the dvg recipe: face-model pretraining and the fine-tunings, stage I (head
only) then stage II (all layers, lr x0.4573 at each third as the paper's every-5-of-15-epochs), each
through core's Trainer; stage II of the WITH arm adds the DVG-Face contrastive loss on generated pairs."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from facerec.engine import Trainer
from facerec.recipes import PipelineConfig, RunDir, train_config
from torch import Tensor

from .losses import contrastive_pair_loss, derangement
from .recipe_params import DvgParams
from .resume import trainer_finished, trainer_resume

STAGE2_DECAY = 0.457305051927326  # the originals' lr factor (every 5 of 15 epochs)


class Batches:
    """``i -> batch`` of random real samples (plus generated pairs), reproducible per index."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, pairs: tuple[Tensor, Tensor] | None = None):
        self.dataset, self.batch_size, self.seed, self.pairs = dataset, batch_size, seed, pairs

    def __call__(self, i: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        idx = torch.randint(len(self.dataset), (self.batch_size,), generator=g)
        b = self.dataset.batch(idx.tolist())
        out = {"image": torch.as_tensor(b["image"]).float(), "label": torch.as_tensor(b["label"]).long()}
        if self.pairs is not None:
            j = torch.randint(len(self.pairs[0]), (self.batch_size,), generator=g)
            out["fake_nir"], out["fake_vis"] = self.pairs[0][j], self.pairs[1][j]
            out["perm"] = derangement(self.batch_size, g)
        return out


def _embed(backbone: Any, images: Tensor) -> Tensor:
    net = backbone.module if hasattr(backbone, "module") else backbone
    return backbone(net.input_spec.prepare(images))


@contextlib.contextmanager
def _running_stats_frozen(module: torch.nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with the batch's statistics but leave their running averages alone
    (momentum 0): what the model will see at test time are real faces, not generated ones."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def recognition_loss(weight: float):
    """CE on real data; with generated pairs in the batch, + ``weight`` x the DVG-Face contrastive loss.

    The generated NIR and VIS images go through the backbone in one call (the original makes two),
    after the real ones and without moving BatchNorm's running statistics (backbones without
    BatchNorm, like the released LightCNN, are unaffected).
    """

    def loss_fn(batch: Mapping[str, Tensor], modules: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        real = batch["image"]
        e_real = _embed(modules["backbone"], real)
        out = modules["head"](e_real, batch["label"])
        if "fake_nir" not in batch:
            return {"loss": out.loss, "ce": out.loss.detach()}
        with _running_stats_frozen(modules["backbone"]):
            fn, fv = _embed(modules["backbone"], torch.cat([batch["fake_nir"], batch["fake_vis"]])).chunk(2)
        ct = contrastive_pair_loss(F.normalize(fn, dim=1), F.normalize(fv, dim=1), batch["perm"])
        return {"loss": out.loss + weight * ct, "ce": out.loss.detach(), "contrastive": ct.detach()}

    return loss_fn


def train_stage(
    config: PipelineConfig,
    run: RunDir,
    name: str,
    backbone: Any,
    head: Any,
    batches: Batches,
    loss_fn: Any,
    defaults: dict[str, Any],
    frozen: tuple[str, ...] = (),
    seed: int | None = None,
) -> dict[str, Any]:
    """One resumable Trainer stage in ``stages/<name>``: the recipe's ``defaults`` under ``--param train.*``."""
    cfg = train_config(config, {"batch_size": batches.batch_size, **defaults})
    if seed is not None:
        cfg = cfg.evolve(seed=seed)
    batches.batch_size = cfg.batch_size
    trainer = Trainer(
        {"backbone": backbone, "head": head},
        loss_fn,
        batches,
        cfg,
        run_dir=run.path / "stages" / name,
        frozen=frozen,
        name=name,
        resume=trainer_resume(config, run, name),
    )
    result = trainer_finished(run, name, trainer.fit())
    backbone.requires_grad_(True)  # frozen stages switch requires_grad off
    head.requires_grad_(True)
    return result


def finetune(
    config: PipelineConfig,
    run: RunDir,
    arm: str,
    face: Any,
    head: Any,
    dataset: Any,
    params: DvgParams,
    pairs: tuple[Tensor, Tensor] | None,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Stage I (head only) then stage II (all layers) from copies of ``face`` and ``head``; both arms of
    one seed draw the same real batches."""
    backbone, head = copy.deepcopy(face), copy.deepcopy(head)
    sgd = {"optimizer": "sgd", "lr": params.finetune_lr, "momentum": 0.9, "weight_decay": 2e-4}
    tag = f"{arm}-seed{seed}" if params.seeds > 1 else arm
    s1 = train_stage(
        config,
        run,
        f"{tag}-stage1",
        backbone,
        head,
        Batches(dataset, params.batch_size, seed + 11),
        recognition_loss(0.0),
        {**sgd, "steps": params.stage1_steps},
        frozen=("backbone",),
        seed=seed,
    )
    n2 = params.stage2_steps
    s2 = train_stage(
        config,
        run,
        f"{tag}-stage2",
        backbone,
        head,
        Batches(dataset, params.batch_size, seed + 12, pairs),
        recognition_loss(params.contrastive_weight),
        {**sgd, "steps": n2, "schedule": "step", "gamma": STAGE2_DECAY, "step_size": max(1, n2 // 3)},
        seed=seed,
    )
    return backbone, {"stage1": s1, "stage2": s2}


__all__ = ["STAGE2_DECAY", "Batches", "finetune", "recognition_loss", "train_stage"]
