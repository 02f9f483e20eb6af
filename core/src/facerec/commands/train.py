"""facerun train: train (and evaluate) a backbone + head [+ generator] on a dataset into a run folder."""

from __future__ import annotations

from typing import Any

import click

#: option name -> TrainConfig field (given options become ``train.<field>=value`` overrides).
TRAIN_OPTIONS = {
    "steps": ("--steps", int, "Optimizer steps."),
    "epochs": ("--epochs", float, "Epochs over the dataset (instead of --steps)."),
    "batch_size": ("--batch-size", int, "Global batch size."),
    "lr": ("--lr", float, "Base learning rate."),
    "optimizer": ("--optimizer", click.Choice(["sgd", "adamw", "adam"]), "Optimizer."),
    "momentum": ("--momentum", float, "SGD momentum."),
    "weight_decay": ("--weight-decay", float, "Weight decay (never on norm layers and biases)."),
    "schedule": ("--schedule", click.Choice(["constant", "step", "multistep", "cosine", "poly"]), "LR schedule."),
    "warmup_steps": ("--warmup-steps", int, "Linear warm-up steps."),
    "amp": ("--amp", click.Choice(["off", "bf16", "fp16"]), "Mixed precision."),
    "grad_clip": ("--grad-clip", float, "Max gradient norm (0 = off)."),
    "grad_accum": ("--grad-accum", int, "Micro-batches per optimizer step."),
    "log_every": ("--log-every", int, "Log every N steps."),
    "eval_every": ("--eval-every", int, "Evaluate every N steps (0 = at the end)."),
    "checkpoint_every": ("--checkpoint-every", int, "Checkpoint every N steps (always at the end)."),
    "num_workers": ("--num-workers", int, "DataLoader worker processes."),
}


def _train_options(func: Any) -> Any:
    for field, (flag, kind, helptext) in reversed(list(TRAIN_OPTIONS.items())):
        func = click.option(flag, field, type=kind, default=None, help=helptext)(func)
    return func


@click.command(name="train")
@click.option("--backbone", "-b", required=True, help="Backbone name.")
@click.option("--head", help="Head (default: the recipe's, arcface for the standard recipe).")
@click.option("--generator", "-g", help="Generator trained and sampled for extra training data.")
@click.option("--dataset", "-d", help="Training dataset (default: the recipe's, synthetic for standard).")
@click.option("--protocol", "-p", multiple=True, help="Evaluation protocol (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (deletes it first).")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--recipe", help="Recipe (default: the generator's, else the backbone's, else standard).")
@click.option("--stage", help="Recipe stage, for recipes that train in stages.")
@_train_options
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KIND.KEY=VALUE",
    help="Component/train/recipe parameter, e.g. head.m=0.4, train.amp=bf16 (repeatable).",
)
def train(
    backbone: str,
    head: str | None,
    generator: str | None,
    dataset: str | None,
    protocol: tuple[str, ...],
    out: str,
    resume: bool,
    overwrite: bool,
    preset: str,
    seed: int,
    device: str,
    recipe: str | None,
    stage: str | None,
    params: tuple[str, ...],
    **train_opts: Any,
) -> None:
    """Train a backbone + head [+ generator] on a dataset; checkpoints, logs and metrics go to --out.

    An existing run in --out is never replaced silently: --resume continues it, --overwrite replaces it.
    A SIGTERM or Ctrl-C writes a last checkpoint before the command exits."""
    from ..recipes import run_pipeline  # imported only when a run starts

    # repr keeps nan/inf/huge values intact for the one parameter check every train.* value goes through
    extra = tuple(f"train.{k}={v!r}" for k, v in train_opts.items() if v is not None)
    # errors (FacerecError) become one line in facerun's group, which also keeps their exit code
    run_pipeline(
        backbone=backbone,
        head=head,
        generator=generator,
        dataset=dataset,
        protocol=protocol,
        preset=preset,
        out=out,
        seed=seed,
        device=device,
        params=(*extra, *params),
        recipe=recipe,
        stage=stage,
        resume=resume,
        overwrite=overwrite,
        echo=click.echo,
    )
