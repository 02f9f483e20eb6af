"""Recipe ``virface``: the repository's stages (``--stage pretrain|generator|virclass|virface``) or, without
``--stage``, the demo that compares pretrain alone, pretrain -> virclass and pretrain -> generator -> virface
at the same budget on labelled + unlabelled (shallow) data, averaged over seeds.

    facerun --backbone virface-resnet18 --recipe virface                      # the demo (quick preset)
    facerun train --backbone virface-resnet18 --recipe virface --stage pretrain --out RUN
    facerun train --backbone virface-resnet18 --recipe virface --stage generator --out RUN
    facerun train --backbone virface-resnet18 --recipe virface --stage virface --out RUN
    ... --param recipe.init=/path/_epoch_9.pytorch   # start from an original VirFace checkpoint
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import attrs
import torch

from facerec import recipes as R
from facerec import registry
from facerec.engine.distributed import is_main_process
from facerec.errors import FacerecError, ParameterError
from facerec.recipes import knob, recipe

from .checkpoints import load_parts, save_parts
from .evaluation import CompatPairs, render_once
from .stages import STAGES, StageSettings, run_stage

#: Training settings per preset. quick: CPU minutes at a reduced width/size; paper: the repository's
#: SGD (momentum 0.9, weight decay 1e-3, x0.1 at the decay epochs), per stage below.
#: quick: 800 steps at lr 0.1 (measured, 1 thread: 60 steps at lr 0.01 left the loss at 18.8 and pairs at
#: chance; 800 steps on 300 ids reach loss 4.3 < ln 300 and 0.73 pair accuracy).
VIRFACE_TRAIN = {
    "quick": {
        "steps": 800,
        "batch_size": 32,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        "schedule": "cosine",
        "warmup_steps": 20,
        "log_every": 50,
    },
    "paper": {
        "epochs": 11,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        "schedule": "multistep",
        "milestones": (8 / 11,),
        "log_every": 100,
    },
}


def _epochs(max_epoch: int, decay: tuple[int, ...]) -> dict[str, Any]:
    """The original's schedule: ``range(0, max_epoch + 1)``, i.e. max_epoch + 1 epochs, lr x0.1 from the start
    of each decay epoch that is reached (as fractions of the run, which TrainConfig's milestones take)."""
    epochs = max_epoch + 1
    return {"epochs": epochs, "milestones": tuple(d / epochs for d in decay if d < epochs)}


#: Paper preset per stage (train.py's defaults and its comments; any --param train.* wins):
#: pretrain: --max_epoch 20 ("20 for pretrain") = 21 epochs, lr 0.01 ("0.01 for pretrain"), B_l 256 ("256 for
#: pretrain"), decay at epochs 8/12/15/18; generator and virface: --max_epoch 10 = 11 epochs, lr 0.1, decay
#: [8, 12, 15, 18] of which only 8 is reached; virclass: 11 epochs, decay [4, 6, 8] ("[4,6,8] for virclass").
PAPER_STAGES: dict[str, dict[str, Any]] = {
    "pretrain": {**_epochs(20, (8, 12, 15, 18)), "lr": 0.01, "batch_size": 256},
    "generator": _epochs(10, (8, 12, 15, 18)),
    "virclass": _epochs(10, (4, 6, 8)),
    "virface": _epochs(10, (8, 12, 15, 18)),
}


@attrs.frozen
class VirfaceParams:
    """``--param recipe.*`` of the VirFace recipe (train.py's options where it has them)."""

    unlabeled: str = knob("synthetic-unlabeled", help="the unlabelled (shallow) dataset")
    unlabeled_params: dict[str, Any] | None = knob(None, help="its parameters, e.g. {'path': 'meta.txt'}")
    # B_u: train.py's --unlabel_batch_size 128 (paper preset); the quick preset's CPU budget uses 32
    unlabel_batch_size: int = knob(32, paper=128, low=1, help="B_u, unlabelled images per step")
    gen_num: int = knob(5, low=1, help="virtual samples per unlabelled feature")
    mse_weight: float = knob(5e3, help="generator reconstruction (MSE) loss weight")
    kl_weight: float = knob(2.0, help="generator KL loss weight")
    flip: bool = knob(True, help="random horizontal flip")
    init: str | None = knob(None, help="checkpoint to start a stage from (VirFace .pytorch or stages/*.safetensors)")
    generator_steps: int | None = knob(None, low=1, help="demo: generator-stage steps (default: half the budget)")
    seeds: int = knob(1, low=1, help="demo: number of seeds averaged (1 keeps the quick demo in CPU minutes)")
    compat_metric: bool = knob(False, help="also report the repository's single best-threshold accuracy")
    compat_norm_batch: int | None = knob(
        None, low=0, help="... with its per-batch dim-0 normalisation (400 for LFW, 200 for CFP)"
    )


def stage_config(config: R.PipelineConfig, tcfg: Any, stage: str) -> Any:
    """The stage's training settings: the paper preset's per-stage schedule under the user's --param train.*."""
    if config.quick:
        return tcfg
    given = config.kind_params("train")
    paper = {
        k: v for k, v in PAPER_STAGES[stage].items() if k not in given and not (k == "epochs" and "steps" in given)
    }
    return tcfg.evolve(**paper)


#: Backbone parameters of the quick preset (unless given with --param backbone.*): a narrow ResNet on
#: 32x32 faces (about 2x faster per step than 48 px), so that the demo fits in CPU minutes.
QUICK_BACKBONE = {"width": 16, "image_size": 32, "embedding_size": 128}
#: Margin of the quick preset's heads (unless given with --param head.*): from scratch, s=32 m=0.5 (and
#: m=0.1-0.3) kept the loss far above ln C for hundreds of steps; s=30 m=0 depended on the warm-up
#: (800 steps: 0.73 or 0.54 pair accuracy), s=16 m=0 reached 0.69. The paper preset keeps s=32 m=0.5.
QUICK_HEAD = {"s": 16.0, "m": 0.0}
#: Demo data of the quick preset (user --param dataset.* / protocol.* / recipe.unlabeled_params win):
#: 60 ids x 8 overfitted (train accuracy 0.5, pairs at chance); 300 ids x 15 generalise.
DEMO_LABELLED = {"quick": {"num_ids": 300, "per_id": 15}, "paper": {}}
DEMO_UNLABELLED = {"quick": {"num_ids": 600, "per_id": 1}, "paper": {}}
DEMO_PROTOCOL = {"quick": {"pairs_per_fold": 60}, "paper": {}}
HEADS = {
    "pretrain": "virface-arcface",
    "generator": "virface-arcface",
    "virclass": "virclass",
    "virface": "virinstance",
}
PREVIOUS = {"generator": "pretrain", "virclass": "pretrain", "virface": "generator"}


def _say(text: str) -> None:
    """Progress and the demo's table on the terminal, once under torchrun (rank 0)."""
    if is_main_process():
        print(text, flush=True)


def _backbone(config: R.PipelineConfig) -> Any:
    overrides = dict(QUICK_BACKBONE) if config.quick else {}
    obj = registry.load("backbone", config.backbone)
    overrides = {k: v for k, v in overrides.items() if k in registry.parameters(obj)}
    return R.build_backbone(config, **overrides)


def _datasets(config: R.PipelineConfig, backbone: Any, knobs: VirfaceParams, demo: bool = False) -> tuple[Any, Any]:
    name_l = config.dataset or R.DEFAULT_DATASET
    defaults = DEMO_LABELLED[config.preset] if demo and name_l == R.DEFAULT_DATASET else {}
    labelled = R.build_dataset(config, backbone, **defaults)
    if not labelled.num_classes:
        raise FacerecError(
            f"dataset {config.dataset or R.DEFAULT_DATASET!r} has no labels; VirFace needs a "
            "labelled set (pass the unlabelled one as recipe.unlabeled)"
        )
    name = knobs.unlabeled
    obj = registry.load("dataset", name)
    params = dict(knobs.unlabeled_params or {})
    if demo and name == "synthetic-unlabeled":
        params = {**DEMO_UNLABELLED[config.preset], **params}
    if "image_size" in registry.parameters(obj):
        params.setdefault("image_size", R.canonical_size(backbone))
    unlabelled = registry.create("dataset", name, **params)
    return labelled, unlabelled


def _settings(knobs: VirfaceParams) -> StageSettings:
    return StageSettings(
        unlabel_batch_size=knobs.unlabel_batch_size,
        gen_num=knobs.gen_num,
        mse_weight=float(knobs.mse_weight),
        kl_weight=float(knobs.kl_weight),
        flip=knobs.flip,
    )


def _protocols(config: R.PipelineConfig, backbone: Any, knobs: VirfaceParams, demo: bool = False) -> dict[str, Any]:
    names = config.protocols or (R.DEFAULT_PROTOCOL,)
    overrides = DEMO_PROTOCOL[config.preset] if demo and names == (R.DEFAULT_PROTOCOL,) else {}
    protocols = R.build_protocols(config, backbone, **overrides)
    if knobs.compat_metric:
        protocols = {n: CompatPairs(p, norm_batch=knobs.compat_norm_batch) for n, p in protocols.items()}
    elif demo:
        protocols = render_once(protocols, R.canonical_size(backbone))
    return protocols


def materialise(dataset: Any, chunk: int = 256) -> Any:
    """Render/decode a dataset once into memory (the demo trains five models on the same data)."""
    from facerec.api import TensorDataset

    n = len(dataset)
    images = torch.cat(
        [torch.as_tensor(dataset.batch(list(range(i, min(i + chunk, n))))["image"]).float() for i in range(0, n, chunk)]
    )
    labels = dataset.labels.clone() if dataset.num_classes else torch.full((n,), -1, dtype=torch.long)
    return TensorDataset(labels, images=images)


def _modules(config, labelled, knobs, backbone=None):
    backbone = backbone if backbone is not None else _backbone(config)
    quick = QUICK_HEAD if config.quick else {}
    head = R.build_head(config, backbone.embedding_size, int(labelled.num_classes), name=HEADS["virface"], **quick)
    generator = registry.create("generator", config.generator or "virface", embedding_size=backbone.embedding_size)
    return backbone, head, generator


def run_one_stage(config: R.PipelineConfig, run: R.RunDir, knobs: VirfaceParams) -> dict[str, Any]:
    """``--stage S``: load the previous stage (``recipe.init`` or this run's ``stages/<prev>.safetensors``),
    train stage S, evaluate, and save ``stages/S.safetensors`` (backbone, head, generator)."""
    from facerec.engine import seed_everything

    stage = config.stage
    seed_everything(config.seed)
    backbone = _backbone(config)
    labelled, unlabelled = _datasets(config, backbone, knobs)
    backbone, head, generator = _modules(config, labelled, knobs, backbone)
    init = knobs.init
    if init is None and stage in PREVIOUS:
        init = run.path / "stages" / f"{PREVIOUS[stage]}.safetensors"
        if not Path(init).is_file():
            raise FacerecError(
                f"stage {stage!r} starts from the {PREVIOUS[stage]!r} stage: run --stage "
                f"{PREVIOUS[stage]} with this --out first, or give --param recipe.init=CHECKPOINT"
            )
    if init is not None:
        loaded = load_parts(
            init,
            backbone=backbone,
            head=head,
            generator=generator if stage == "virface" else None,
            optional_generator=stage != "virface",
        )
        if stage == "virface" and "generator" not in loaded:
            raise FacerecError(f"{init}: stage 'virface' needs a checkpoint with a generator (run 'generator')")
    tcfg = stage_config(config, R.train_config(config, VIRFACE_TRAIN[config.preset]), stage)
    settings = _settings(knobs)
    protocols = _protocols(config, backbone, knobs)
    result = run_stage(
        stage,
        backbone=backbone,
        head=head,
        generator=generator,
        labelled=labelled,
        unlabelled=unlabelled,
        config=tcfg,
        settings=settings,
        run_dir=run.path,
        evaluators=protocols if stage != "generator" else (),
        resume=config.resume,
    )
    result.update(
        {
            "labelled_batch": tcfg.batch_size,
            "unlabelled_batch": settings.unlabel_batch_size,
            "epochs": tcfg.epochs or 0,
            "lr": tcfg.lr,
        }
    )
    if stage != "generator" and result.get("finished"):
        if not any(k.startswith(tuple(protocols)) for k in result):
            result.update(R.evaluate_protocols(protocols, backbone, device=config.device, run=run, tag=f"{stage}-"))
    if is_main_process():  # under torchrun rank 0 alone writes files
        save_parts(
            run.file(f"stages/{stage}.safetensors"),
            backbone=backbone,
            head=head,
            generator=generator if stage in ("generator", "virface") else None,
            stage=stage,
        )
    R.save_backbone(run, backbone)
    return result


def _accuracy(metrics: dict[str, Any]) -> float:
    keys = [k for k in metrics if k.endswith("/accuracy") and not k.startswith("train/")]
    return float(metrics[keys[0]]) if keys else float("nan")


def run_demo(config: R.PipelineConfig, run: R.RunDir, knobs: VirfaceParams) -> dict[str, Any]:
    """pretrain alone, pretrain continued (labelled only, same budget), pretrain -> virclass and
    pretrain -> generator -> virface, for each seed; a table of mean (std) pair accuracy."""
    import copy

    from facerec.engine import seed_everything

    tcfg = R.train_config(config, VIRFACE_TRAIN[config.preset])
    if tcfg.epochs is not None:
        raise ParameterError(
            "the VirFace demo compares the methods at one step budget: give --param train.steps=N "
            "with --preset paper, or run the paper's stages with --stage"
        )
    steps = tcfg.total_steps()
    gen_steps = int(knobs.generator_steps or max(1, steps // 2))
    settings = _settings(knobs)
    rows: dict[str, list[float]] = {k: [] for k in ("pretrain", "pretrain-continued", "virclass", "virface")}
    per_seed = []
    for i in range(int(knobs.seeds)):
        seed = config.seed + i
        seed_everything(seed)
        scfg = tcfg.evolve(seed=seed, progress=False)
        backbone = _backbone(config)
        if i == 0:  # the same data and pairs for every seed: render once
            labelled, unlabelled = (materialise(d) for d in _datasets(config, backbone, knobs, demo=True))
            protocols = _protocols(config, backbone, knobs, demo=True)
        backbone, head, generator = _modules(config, labelled, knobs, backbone)
        sub = run.path / f"seed{seed}"
        _say(f"seed {seed}: pretrain ({steps} steps)")
        run_stage(
            "pretrain",
            backbone=backbone,
            head=head,
            generator=None,
            labelled=labelled,
            unlabelled=None,
            config=stage_config(config, scfg, "pretrain"),
            settings=settings,
            run_dir=sub,
        )
        got = {"pretrain": R.evaluate_protocols(protocols, backbone, device=config.device)}
        _say(f"seed {seed}: pretrain accuracy {_accuracy(got['pretrain']):.4f}")
        start = (copy.deepcopy(backbone.state_dict()), copy.deepcopy(head.state_dict()))
        variants = (
            ("pretrain-continued", ("pretrain",)),
            ("virclass", ("virclass",)),
            ("virface", ("generator", "virface")),
        )
        for name, chain in variants:
            backbone.load_state_dict(start[0])
            head.load_state_dict(start[1])
            seed_everything(seed + 1)
            for stage in chain:
                _say(f"seed {seed}: {name}: stage {stage}")
                cfg = (
                    scfg.evolve(steps=gen_steps, warmup_steps=0)
                    if stage == "generator"
                    else stage_config(config, scfg, stage)
                )
                run_stage(
                    stage,
                    backbone=backbone,
                    head=head,
                    generator=generator,
                    labelled=labelled,
                    unlabelled=unlabelled,
                    config=cfg,
                    settings=settings,
                    run_dir=sub / name,
                )
            if name == "virface" and is_main_process():
                save_parts(
                    run.file(f"seed{seed}/virface.safetensors"),
                    backbone=backbone,
                    head=head,
                    generator=generator,
                    stage="virface",
                )
            got[name] = R.evaluate_protocols(protocols, backbone, device=config.device)
            _say(f"seed {seed}: {name} accuracy {_accuracy(got[name]):.4f}")
        for name, m in got.items():
            rows[name].append(_accuracy(m))
        per_seed.append({"seed": seed, **{name: _accuracy(m) for name, m in got.items()}})
        if config.device.startswith("cuda"):
            torch.cuda.empty_cache()
    budget = {
        "pretrain": f"{steps}",
        "pretrain-continued": f"{steps} + {steps}",
        "virclass": f"{steps} + {steps}",
        "virface": f"{steps} + {gen_steps} (generator) + {steps}",
    }
    table = []
    metrics: dict[str, Any] = {"seeds": len(per_seed)}
    for name, values in rows.items():
        mean = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        table.append(
            {
                "method": name,
                "steps": budget[name],
                "accuracy mean": mean,
                "accuracy std": std,
                "per seed": ", ".join(f"{v:.4f}" for v in values),
            }
        )
        metrics[f"{name}/accuracy"] = mean
        metrics[f"{name}/accuracy_std"] = std
    protocol_names = ", ".join(config.protocols or (R.DEFAULT_PROTOCOL,))
    text = (
        f"Labelled: {config.dataset or R.DEFAULT_DATASET}; unlabelled: {knobs.unlabeled}; protocol: "
        f"{protocol_names}; {len(per_seed)} seeds from {config.seed}; B_l {tcfg.batch_size}, "
        f"B_u {settings.unlabel_batch_size}, gen_num {settings.gen_num}, MSE weight {settings.mse_weight:g}, "
        f"KL weight {settings.kl_weight:g}."
    )
    run.write_json("demo.json", {"table": table, "per_seed": per_seed, "note": text})
    R.write_summary(
        run,
        config,
        {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        tables={"VirFace demo: pair accuracy (mean over seeds)": table},
        text=text,
    )
    _say("\n" + R.markdown_table(table) + "\n" + text)
    return metrics


@recipe(params=VirfaceParams, stages=STAGES)
def virface_recipe(config: R.PipelineConfig, run: R.RunDir, knobs: VirfaceParams) -> dict[str, Any]:
    """VirFace: one stage (--stage pretrain|generator|virclass|virface) or the comparison demo (no --stage)."""
    if config.stage is not None:
        return run_one_stage(config, run, knobs)
    return run_demo(config, run, knobs)
