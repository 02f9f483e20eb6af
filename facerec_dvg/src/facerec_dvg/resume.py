"""``--resume`` for the dvg recipe: where every stage keeps its state in the run, and how a stage continues.

Every stage checkpoints: the recognition stages (face-model pretraining, stage I / II of each fine-tuning)
through core's Trainer (``stages/<name>/checkpoints/<name>-last.safetensors``), the identity sampler and the
dual generator through :class:`~facerec_dvg.loop_checkpoint.LoopCheckpoint`
(``checkpoints/{identity-sampler,generator}-last.safetensors``, every ``train.checkpoint_every`` steps, else
every ``LOOP_CHECKPOINT_EVERY``, and at the end). With ``--resume`` a finished stage is restored, not run
again, and an unfinished one continues exactly where it stopped; sampling and evaluation are deterministic
and simply rerun. ``--param train.stop_at=N`` stops the first stage that reaches step N, as an interruption
would (then ``--resume`` continues); a resumed run that must go on past it leaves ``train.stop_at`` out.

The released identity sampler (``--param generator.identity_sampler_weights=dec_epoch_45.pth.tar``, the
paper's MS-Celeb-1M sampler) stays frozen: the recipe samples identities from it as the original does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facerec.engine.checkpoint import checkpoint_path
from facerec.recipes import PipelineConfig, RunDir, train_config
from facerec.errors import FacerecError, ParameterError

from .loop_checkpoint import LoopCheckpoint

LOOP_CHECKPOINT_EVERY = 500  # steps between checkpoints of the generator / sampler loops (original: per epoch)


class StageStopped(FacerecError):
    """A stage stopped before its last step (``train.stop_at``): the run continues with ``--resume``."""


def _stopped(stage: str, step: int, total: int, option: str = "train.stop_at", who: str = "dvg recipe") -> StageStopped:
    return StageStopped(
        f"{who}: stage {stage!r} stopped at step {step} of {total} ({option}); "
        f"run the same command with --resume (without {option}) to continue"
    )


# -- recognition stages (core's Trainer) ------------------------------------------------------------------
def trainer_resume(config: PipelineConfig, run: RunDir, name: str) -> Path | None:
    """The checkpoint the Trainer of stage ``name`` continues from (``--resume`` and one exists), else None."""
    path = checkpoint_path(run.path / "stages" / name, name)
    return path if config.resume and path.is_file() else None


def trainer_finished(run: RunDir, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` of a Trainer stage; stops the recipe when it ended early. A stage restored at its end ran no
    step in this process: its last logged training values come from its log."""
    if not result.get("finished", True):
        raise _stopped(name, int(result["step"]), int(result["total_steps"]))
    if not any(k.startswith("train/") for k in result):
        log = run.path / "stages" / name / "log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
        last = [r for r in records if r.get("kind", "train") == "train"]
        if last:
            skip = {"step", "kind", "stage", "time"}
            result.update({f"train/{k}": v for k, v in last[-1].items() if k not in skip})
    return result


# -- the hand-written loops (identity sampler, dual generator) ---------------------------------------------
def loop_checkpoint(
    config: PipelineConfig, run: RunDir, name: str, meta: dict[str, Any] | None = None
) -> LoopCheckpoint:
    """Checkpoint of loop ``name``: continued from with ``--resume``; a fresh run starts from scratch."""
    path = run.checkpoint(name)
    if not config.resume and path.is_file():
        path.unlink()  # a replaced run's state is not this run's
    cfg = train_config(config)
    return LoopCheckpoint(path, every=cfg.checkpoint_every or LOOP_CHECKPOINT_EVERY, stop_at=cfg.stop_at, meta=meta)


def loop_finished(stage: str, step: float, total: int, option: str = "train.stop_at", who: str = "dvg recipe") -> None:
    if int(step) < total:
        raise _stopped(stage, int(step), total, option, who)


def generator_metadata(arch: str, gen: Any) -> dict[str, Any]:
    """What a saved generator says about itself: ``facerun generate --weights`` rebuilds it from this alone."""
    params = gen.build_params() if callable(getattr(gen, "build_params", None)) else {}
    return {
        "arch": arch,
        "kind": "generator",
        "params": params,
        "image_size": int(gen.image_size),
        "format": "facerec-safetensors-1",
    }


# -- the identity sampler: released and frozen, or trained ---------------------------------------------------
def check_identity_sampler(gen: Any, steps: int) -> None:
    """``recipe.sampler_steps=0`` keeps the sampler as it is: only meaningful with released weights."""
    if hasattr(gen, "fit_identity_sampler") and steps == 0 and not getattr(gen, "identity_sampler_source", None):
        raise ParameterError(
            "recipe.sampler_steps=0 keeps the identity sampler untrained: give the released one "
            "with --param generator.identity_sampler_weights=dec_epoch_45.pth.tar (it then stays "
            "frozen), or train one with recipe.sampler_steps >= 1"
        )


def identity_sampler_stage(
    config: PipelineConfig, run: RunDir, gen: Any, face: Any, dataset: Any, steps: int, stages: Any, paired_ids: int
) -> dict[str, Any]:
    """The released sampler stays frozen (the paper samples identities from it); otherwise a sampler is trained
    on the face model's features of the paired set, resumably. Returns the stage's metrics."""
    released = getattr(gen, "identity_sampler_source", None)
    if released:
        gen.identity_sampler.eval().requires_grad_(False)
        stages.done("identity sampler: released weights, frozen", Path(released).name, "-", "-", "-", "-")
        return {"generator/identity_sampler": f"released, frozen: {released}"}
    import torch
    from facerec.inference import embed_batches

    chunks = (
        torch.as_tensor(dataset.batch(list(range(s, min(s + 128, len(dataset)))))["image"])
        for s in range(0, len(dataset), 128)
    )
    feats = embed_batches(face, chunks, device=config.device)
    stats = gen.fit_identity_sampler(
        feats,
        steps=steps,
        device=config.device,
        seed=config.seed,
        progress=True,
        checkpoint=loop_checkpoint(config, run, "identity-sampler"),
    )
    loop_finished("identity-sampler", stats.pop("sampler_step"), steps)
    stages.done("identity sampler", "face-model features of the paired set", paired_ids, len(dataset), steps, "-")
    return {f"generator/{k}": v for k, v in stats.items()}
