"""Train a Vec2Face generator with core's engine (AMP, DDP, clipping, checkpoints, exact resume).

Batches are images (canonical [0,1], resized to the generator's size, mapped to [-1,1]) with their
identity features (``feature`` in the dataset, else computed by the identity estimator). The
discriminator is trained in the same step: the total ``ae + d_loss`` reproduces the original's
gradients (``d_loss`` sees ``x_hat.detach()``; the generator-loss gradient also reaches D, as in
the original, where ``D(x_hat)`` is not detached).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from facerec.api import Dataset
from facerec.engine import Trainer, TrainConfig, dataset_batches
from facerec.errors import FacerecError

from .discriminator import Discriminator
from .losses import LPIPS, LossWeights, discriminator_loss, generator_losses
from .vit import TRAINING_MASK, MaskConfig

if TYPE_CHECKING:
    from .generator import Vec2Face


@attrs.frozen
class TrainOptions:
    """Generator training settings. ``disc_start`` is in steps (the original counts epochs)."""

    steps: int = 1000
    batch_size: int = 32
    device: str = "cpu"
    seed: int = 0
    progress: bool = False
    lr: float = 4e-5 * 128 / 112  # the README config's blr * batch / 112
    warmup_steps: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 2.0
    amp: str = "off"
    disc_start: int | None = None  # None: never (the GAN term off)
    disc_dims: tuple[int, ...] | None = None
    lpips_vgg_weights: str | None = None
    lpips_lin_weights: str | None = None
    weights: LossWeights = LossWeights()
    run_dir: str | None = None
    resume: bool = False
    log_every: int = 10
    checkpoint_every: int = 0
    min_lr: float = 0.0
    grad_accum: int = 1
    num_workers: int = 0
    mask: MaskConfig = TRAINING_MASK  # the training masking schedule (min 0.5, max 1, mu 0.75, std 0.25)


def _images(batch: Mapping[str, Any], size: int) -> Tensor:
    x = batch["image"].float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * 2 - 1


def train_generator(gen: Vec2Face, dataset: Dataset, opts: TrainOptions) -> dict[str, Any]:
    size = gen.config.img_size
    identity = gen.estimator("identity")
    if identity is not None:
        identity.to(opts.device)
    probe = dataset[0]
    if "feature" not in probe and identity is None:
        raise FacerecError(
            "training vec2face needs identity features: a dataset with 'feature' entries, or "
            "an identity model (generator.set_estimators(identity=...) / identity_weights=...)"
        )
    lpips = None
    if opts.lpips_vgg_weights or opts.lpips_lin_weights:
        if not (opts.lpips_vgg_weights and opts.lpips_lin_weights):
            raise FacerecError("LPIPS needs both lpips_vgg_weights (torchvision VGG16) and lpips_lin_weights (vgg.pth)")
        lpips = LPIPS(opts.lpips_vgg_weights, opts.lpips_lin_weights).to(opts.device)
    notes = losses_off(identity is not None, lpips is not None, opts.weights)
    say(opts.run_dir, notes)
    use_gan = opts.disc_start is not None
    modules: dict[str, torch.nn.Module] = {"generator": gen}
    if use_gan:
        dims = opts.disc_dims or ((64, 128, 256, 512) if size >= 64 else (16, 32, 64, 128))
        modules["discriminator"] = Discriminator(dims)
    cfg = TrainConfig(
        steps=opts.steps,
        batch_size=opts.batch_size,
        lr=opts.lr,
        optimizer="adamw",
        betas=(0.9, 0.99),
        weight_decay=opts.weight_decay,
        schedule="cosine",
        warmup_steps=opts.warmup_steps,
        amp=opts.amp,
        grad_clip=opts.grad_clip,
        seed=opts.seed,
        device=opts.device,
        progress=opts.progress,
        log_every=opts.log_every,
        checkpoint_every=opts.checkpoint_every,
        find_unused_parameters=True,
        min_lr=opts.min_lr,
        grad_accum=opts.grad_accum,
        num_workers=opts.num_workers,
    )
    from .generator import _seeded

    def loss_fn(batch: Mapping[str, Any], mods: Mapping[str, torch.nn.Module], step: int) -> dict[str, Tensor]:
        real = _images(batch, size)
        if "feature" in batch:
            feats = batch["feature"].float()
        else:
            with torch.no_grad():
                feats = identity(real).float()
        out = mods["generator"](feats, generator=_seeded(opts.seed, 5, step))
        fake = out.image
        gan_on = use_gan and step >= int(opts.disc_start or 0)
        d_fake = mods["discriminator"](fake) if gan_on else None
        terms = generator_losses(
            real,
            fake,
            out.logits,
            out.gt_tokens,
            weights=opts.weights,
            features=feats,
            identity=identity,
            lpips=lpips,
            disc_logits_fake=d_fake,
            gan_on=gan_on,
        )
        loss = terms["ae"]
        if gan_on:
            terms["d"] = discriminator_loss(mods["discriminator"](real), mods["discriminator"](fake.detach()))
            loss = loss + terms["d"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    saved_mask = gen.mask
    gen.mask = opts.mask
    try:
        trainer = Trainer(
            modules,
            loss_fn,
            dataset_batches(dataset, cfg),
            cfg,
            run_dir=opts.run_dir,
            resume=(Path(opts.run_dir) if opts.resume and opts.run_dir else None),
            local_batches=True,
            num_samples=len(dataset),
            name="vec2face",
        )
        result = trainer.fit()
    finally:
        gen.mask = saved_mask
        gen.eval()
    out: dict[str, Any] = {
        k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    out["losses_off"] = "; ".join(notes) if notes else "none"
    return out


def losses_off(identity: bool, lpips: bool, weights: LossWeights) -> list[str]:
    """The terms of the original's generator loss that this run leaves out, and why."""
    notes = []
    if not identity:
        notes.append(
            "identity loss off: no identity model (give identity_weights=arcface-r100-glint360k.pth, "
            "--identity-weights, or generator.set_estimators(identity=...))"
        )
    elif not weights.identity:
        notes.append("identity loss off: its weight is 0")
    if not lpips:
        notes.append(
            "LPIPS off: it needs the VGG16 weights and LPIPS's vgg.pth (lpips_vgg_weights, "
            "lpips_lin_weights / --lpips-vgg, --lpips-lin)"
        )
    return notes


def say(run_dir: str | None, notes: list[str]) -> None:
    """Tell the terminal (rank 0) and the run's log.jsonl which loss terms are off."""
    from facerec.engine.distributed import is_main_process
    from facerec.engine import RunLogger

    if not notes or not is_main_process():
        return
    import sys

    for note in notes:
        print(f"vec2face: {note}", file=sys.stderr, flush=True)
    RunLogger(run_dir, tensorboard=False, stage="vec2face").log(0, {"losses_off": "; ".join(notes)}, kind="note")
