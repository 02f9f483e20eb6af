"""The ``standard`` recipe: train a backbone with a margin head on a dataset and evaluate it; with a
generator, fit it, sample a set, and train with and without the generated data to compare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .. import registry
from ..data.cache import maybe_cache
from .components import build, build_backbone, build_dataset, build_generator, build_head, canonical_size, train_config
from .concat import LabelledConcat
from .config import DEFAULT_DATASET, DEFAULT_HEAD, DEFAULT_PROTOCOL, PipelineConfig
from .declare import knob, recipe
from .evaluate import evaluate_protocols
from .rundir import RunDir, save_backbone
from .summary import write_summary

#: TrainConfig defaults per preset. quick: a couple of CPU minutes; paper: the ArcFace paper's SGD
#: schedule (lr 0.1, momentum 0.9, wd 5e-4, x0.1 at 40/70/90 % of the run, batch 512 scaled down).
STANDARD_TRAIN = {
    # 400 steps: ~80 s on 2 CPU cores, synthetic-pairs accuracy ~0.67 (chance 0.5) with small-cnn
    "quick": {
        "steps": 400,
        "batch_size": 64,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_steps": 20,
        "log_every": 20,
    },
    "paper": {
        "epochs": 20,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": (0.4, 0.7, 0.9),
        "warmup_steps": 200,
        "log_every": 50,
    },
}
#: margin-head settings the quick preset uses unless given (s=64, m=0.5 barely moves in a few hundred steps)
QUICK_HEAD = {"s": 30.0, "m": 0.3}
#: protocol parameters the quick preset lowers (only where the protocol has them and the user gave none)
QUICK_PROTOCOL = {"pairs_per_fold": 200}


@attrs.frozen
class StandardParams:
    """``--param recipe.*`` of the standard recipe (the generator ones apply with ``--generator``)."""

    gen_steps: int = knob(50, paper=5000, low=0, help="generator training steps")
    gen_ids: int = knob(16, paper=1000, low=1, help="generated identities")
    gen_per_id: int = knob(8, paper=20, low=1, help="generated images per identity")
    augment: Literal["flip"] | None = knob("flip", help="training augmentation: flip, or none")


def _quick_backbone_size(config: PipelineConfig) -> dict[str, Any]:
    cls = registry.load("backbone", config.backbone)
    size = getattr(cls, "quick_image_size", None)
    if config.quick and size and "image_size" not in config.kind_params("backbone"):
        return {"image_size": int(size)}
    return {}


def _train_and_eval(
    config: PipelineConfig,
    run: RunDir,
    dataset: Any,
    protocols: Mapping[str, Any],
    tcfg: Any,
    stage: str,
    params: StandardParams,
) -> tuple[dict[str, Any], Any]:
    from ..engine import seed_everything, train_classifier

    seed_everything(config.seed)
    backbone = build_backbone(config, **_quick_backbone_size(config))
    head_cls = registry.load("head", config.head or DEFAULT_HEAD)
    quick: dict[str, Any] = {k: v for k, v in QUICK_HEAD.items() if config.quick and k in registry.parameters(head_cls)}
    head = build_head(config, backbone.embedding_size, int(dataset.num_classes), **quick)
    resume = config.resume and run.checkpoint(stage).is_file()
    # periodic evaluation (train.eval_every > 0) logs every protocol to log.jsonl during training
    result = train_classifier(
        backbone,
        head,
        dataset,
        tcfg,
        run_dir=run.path,
        name=stage,
        augment=params.augment,
        resume=run.checkpoint(stage) if resume else None,
        evaluators=dict(protocols) if tcfg.eval_every else (),
    )
    if not result["finished"]:
        return result, backbone
    result.update(evaluate_protocols(protocols, backbone, device=str(tcfg.device), run=run, tag=f"{stage}-"))
    return result, backbone


def _save_samples(run: RunDir, generated: Any) -> None:
    images = getattr(generated, "data", None)
    if images is not None and getattr(generated, "key", "") == "image" and images.dim() == 4:
        run.save_png("pictures/generated-samples.png", images[:32].float().clamp(0, 1))


@recipe(
    params=StandardParams, defaults={"head": DEFAULT_HEAD, "dataset": DEFAULT_DATASET, "protocols": (DEFAULT_PROTOCOL,)}
)
def standard_recipe(config: PipelineConfig, run: RunDir, params: StandardParams) -> dict[str, Any]:
    """Train a backbone with a margin head and evaluate it; with --generator, also train on its samples.

    Defaults: dataset synthetic, head arcface, protocol synthetic-pairs. With a generator: fit it, sample a
    set, train with and without it and compare."""
    config.head = config.head or DEFAULT_HEAD  # resolved names go to config.json and summary.md
    config.dataset = config.dataset or DEFAULT_DATASET
    config.protocols = config.protocols or (DEFAULT_PROTOCOL,)
    from ..engine import seed_everything

    seed_everything(config.seed)
    probe = build_backbone(config, **_quick_backbone_size(config))
    dataset = maybe_cache(build_dataset(config, probe))
    protocols = {}
    for name in config.protocols:
        cls = registry.load("protocol", name)
        extra = {
            k: v
            for k, v in QUICK_PROTOCOL.items()
            if config.quick and k in registry.parameters(cls) and k not in config.kind_params("protocol")
        }
        protocols[name] = build(config, "protocol", name, image_size=canonical_size(probe), **extra)
    tcfg = train_config(config, STANDARD_TRAIN[config.preset])
    metrics: dict[str, Any] = {}
    if not config.generator:
        result, backbone = _train_and_eval(config, run, dataset, protocols, tcfg, "train", params)
        metrics.update(result)
        if result["finished"]:
            save_backbone(run, backbone)
        write_summary(run, config, metrics)
        return metrics
    generator = build_generator(config, probe).to(config.device)
    fit_metrics = generator.fit(
        dataset,
        steps=params.gen_steps,
        batch_size=min(32, tcfg.batch_size),
        device=config.device,
        seed=config.seed,
        progress=True,
    )
    generated = generator.as_dataset(params.gen_ids, params.gen_per_id, seed=config.seed, device=config.device)
    _save_samples(run, generated)
    mixed = LabelledConcat(dataset, generated)
    rows = []
    for stage, data in (("baseline", dataset), ("with-generated", mixed)):
        result, backbone = _train_and_eval(config, run, data, protocols, tcfg, stage, params)
        if result["finished"]:
            save_backbone(run, backbone, f"backbone-{stage}.safetensors")
        metrics[stage] = result
        rows.append(
            {
                "training data": stage,
                "samples": len(data),
                "classes": data.num_classes,
                **{k: v for k, v in result.items() if "/" in k and not k.startswith("train/")},
            }
        )
    metrics["generator"] = {k: float(v) for k, v in (fit_metrics or {}).items() if isinstance(v, (int, float))}
    for key in rows[0]:
        if "/" in key and key in rows[1] and isinstance(rows[0][key], float):
            metrics[f"delta/{key}"] = rows[1][key] - rows[0][key]
    write_summary(
        run,
        config,
        {k: v for k, v in metrics.items() if not isinstance(v, dict)},
        tables={"With and without generated data": rows},
    )
    return metrics


__all__ = ["QUICK_HEAD", "QUICK_PROTOCOL", "STANDARD_TRAIN", "StandardParams", "standard_recipe"]
