"""The ``dcr`` recipe: trunk stage, branch stage (specialised init), SCface fine-tuning.

``facerun --backbone dcr-trunk --dataset synthetic-lowres`` runs trunk then branches and reports
verification accuracy per resolution for trunk and branches side by side;
``facerun train --recipe dcr --stage trunk|branch|scface`` runs one stage (``--resume`` continues it).
Unlike the original, momentum and weight decay are honoured (``train.*``), and the branch stage
starts from the trunk stage of the same run (or ``recipe.init``) with the coupled branches
specialised (fc1 = identity, fc2 = trunk classifier).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from facerec import registry
from facerec.engine import Trainer, dataset_batches, seed_everything
from facerec.errors import FacerecError
from facerec.recipes import (
    PipelineConfig,
    RunDir,
    build,
    build_backbone,
    knob,
    recipe,
    save_backbone,
    train_config,
    write_summary,
)

from .losses import CMLoss, TrunkLoss
from .model import DEFAULT_SCALES
from .sampling import MPerClassIndices
from .training import branch_loss_fn, coupling_pairs, load_init, trunk_loss_fn

STAGES = ("trunk", "branch", "scface")


@attrs.frozen
class DcrParams:
    """``--param recipe.*`` of the DCR recipe. The paper preset takes the README recipes' --aug-plus and the
    original's exact PIL low-resolution synthesis; the quick preset a shorter branch stage (fc layers only:
    cheap to fit; why: facerec_dcr/README.md)."""

    scales: tuple[int, ...] = knob(DEFAULT_SCALES, converter=tuple, help="low resolutions with a branch each (px)")
    init: str | None = knob("", help="weights to start the branch/scface stage from (default: this run's trunk)")
    specialised_init: bool = knob(True, help="the original's --init-branches (SI)")
    trunk_bn: Literal["frozen", "train"] = knob("frozen", help="train = the original (the frozen trunk's BN updates)")
    train_trunk: bool = knob(False, help="the original's -nft: also fine-tune the trunk in the branch stage")
    branch_steps: int = knob(100, paper=0, low=0, help="branch-stage steps in the two-stage run (0 = train.steps)")
    center_factor: float = knob(0.008, help="trunk loss beta / CM loss lambda_c")
    dist_factor: float = knob(0.008, help="CM loss lambda_d")
    update_factor: float = knob(0.6, help="centre momentum alpha")
    augment: bool = knob(True, help="random horizontal flip (without aug_plus)")
    aug_plus: bool = knob(False, paper=True, help="--aug-plus: MoCo v2 crop, colour jitter, grey, blur, flip")
    lowres: Literal["tensor", "pil"] = knob(
        "tensor", paper="pil", help="LR views: tensor (batched) or pil (the original's exact path)"
    )
    sampler: Literal["random", "m-per-class"] = knob("random", help="m-per-class: the original's --Msampler")
    m_per_class: int = knob(4, low=1, help="images per identity with the m-per-class sampler")
    trunk_miner: Literal["none", "batch-hard"] | None = knob(
        "none", help="--trunkloss-miner (batch-hard: BatchHardMiner)"
    )
    trunk_mining: Literal["center", "embedding", "none"] | None = knob("center", help="--trunkloss-miningin")
    branch_miner: Literal["none", "batch-hard"] | None = knob(
        "none", help="--branchloss-miner (batch-hard: BatchHardMiner)"
    )

    def __attrs_post_init__(self) -> None:
        for name in ("trunk_miner", "trunk_mining", "branch_miner"):  # `--param recipe.X=none` parses as None
            if getattr(self, name) is None:
                object.__setattr__(self, name, "none")


#: The README recipes validate every epoch and stop after 20 epochs without improvement (--patience 20).
PAPER_PATIENCE = 20
QUICK_SIZE = 32  # the quick preset renders faces at 32 px (the paper: 120): 2.7x cheaper steps than 64 px
# What the quick preset changes, each only where the user gave no value (why: facerec_dcr/README.md):
# un-normalised trunk embeddings (with unit-norm embeddings and a plain linear fc2 the logits are bounded
# by |W| ~ 0.6 at init, so cross-entropy stays at ln(C) for hundreds of steps) and 100 training identities
# (300 are seen ~2 times each in a CPU budget).
QUICK_BACKBONE = {"normalized_embeddings": False}
QUICK_DATASET = {"num_ids": 100}

DEFAULTS = {
    # Adam as the README recipes; lr 2e-3 with warm-up and cosine decay on the short synthetic runs
    # (the original: 1e-2, x0.1 at epochs 10/30 of 60)
    "quick": {
        "steps": 200,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 2e-3,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_steps": 10,
        "log_every": 10,
    },
    "paper": {
        "epochs": 60,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-2,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": (1 / 6, 1 / 2),
        "log_every": 50,
    },
}


def _image_size(config: PipelineConfig) -> int:
    given = config.kind_params("backbone").get("image_size")
    return int(given) if given else (QUICK_SIZE if config.quick else 120)


def _dataset(config: PipelineConfig, default: str, size: int, scales):
    name = config.dataset or default
    registry.find("dataset", name)
    # datasets that synthesise LR views themselves (synthetic-lowres) use the model's scales
    data = build(
        config, "dataset", name, image_size=size, resolutions=tuple(scales), **(QUICK_DATASET if config.quick else {})
    )
    if int(getattr(data, "num_classes", 0)) <= 0:
        raise FacerecError(f"dataset {name!r} has no identity labels; the DCR stages train classifiers")
    return data


def _protocols(config: PipelineConfig, size: int, default: str, **overrides: Any) -> dict[str, Any]:
    names = config.protocols or (default,)
    return {n: build(config, "protocol", n, image_size=size, **overrides) for n in names}


def _evaluator(protocols: dict[str, Any], model: Any, device: str, keep_branches: bool):
    def evaluate(step: int) -> dict[str, float]:
        out = {}
        for name, proto in protocols.items():
            for k, v in proto.evaluate(model, device=device).metrics.items():
                if keep_branches or not k.startswith("branch_"):
                    out[f"{name}/{k}"] = float(v)
        return out

    return evaluate


def _batches(data: Any, tcfg: Any, p: DcrParams):
    """``i -> batch`` for the Trainer: a random permutation per epoch, or m images per identity."""
    if p.sampler == "random":
        return dataset_batches(data, tcfg)
    from facerec.engine import distributed as D
    from facerec.engine import LoaderBatches, has_fast_batch

    D.init_from_env(tcfg.device)
    micro = tcfg.batch_size // tcfg.grad_accum
    order = MPerClassIndices(data.labels, int(p.m_per_class), micro, tcfg.seed)
    part = D.local_slice(micro)

    def local(i: int):
        return order(i)[part]

    if has_fast_batch(data):
        return lambda i: data.batch(local(i).tolist())
    return LoaderBatches(data, local, num_workers=tcfg.num_workers)


def _paper_evaluation(config: PipelineConfig, tcfg: Any, data: Any, protocols: dict[str, Any], stage: str) -> Any:
    """Paper preset: validate every epoch and stop early on the original's criterion (the mean over the
    resolutions of the first protocol) after 20 epochs without improvement, unless train.* says otherwise."""
    first = next(iter(protocols.values()), None)
    if config.quick or first is None or not type(first).__module__.startswith("facerec_dcr"):
        return tcfg  # the criterion is a DCR protocol's metric; other protocols keep train.* as given
    given = config.kind_params("train")
    changes: dict[str, Any] = {}
    if "eval_every" not in given:
        changes["eval_every"] = max(1, -(-len(data) // tcfg.batch_size))
    if "early_stopping_metric" not in given:
        changes["early_stopping_metric"] = f"{next(iter(protocols))}/{'branch_' if stage == 'branch' else ''}criterion"
    if "early_stopping_patience" not in given:
        changes["early_stopping_patience"] = PAPER_PATIENCE
    return tcfg.evolve(**changes)


def _resume(config: PipelineConfig, run: RunDir, stage: str):
    path = run.checkpoint(stage)
    return path if config.resume and path.is_file() else None


def _fit(
    config: PipelineConfig,
    run: RunDir,
    stage: str,
    model,
    criterion,
    loss_fn,
    data,
    tcfg,
    frozen,
    evaluator,
    p: DcrParams,
) -> dict[str, Any]:
    for param in model.parameters():  # a previous stage's freezing must not leak into this one
        param.requires_grad_(True)
    trainer = Trainer(
        {"backbone": model, "criterion": criterion},
        loss_fn,
        _batches(data, tcfg, p),
        tcfg,
        run_dir=run.path,
        frozen=frozen,
        evaluators={"": evaluator},
        resume=_resume(config, run, stage),
        local_batches=True,
        num_samples=len(data),
        name=stage,
    )
    return trainer.fit()


def _views(p: DcrParams) -> dict[str, Any]:
    return {"lowres": p.lowres, "aug_plus": bool(p.aug_plus)}


def _trunk_criterion(model, p: DcrParams) -> TrunkLoss:
    return TrunkLoss(
        model.num_classes,
        model.embedding_size,
        p.center_factor,
        p.update_factor,
        miner=p.trunk_miner,
        mining=p.trunk_mining,
    )


def _stage_trunk(config, run, p, model, data, tcfg, protocols) -> dict[str, Any]:
    loss_fn = trunk_loss_fn(model.scales, model.num_classes, p.augment, **_views(p))
    ev = _evaluator(protocols, model, tcfg.device, keep_branches=False)
    return _fit(
        config, run, "trunk", model, _trunk_criterion(model, p), loss_fn, data, tcfg, ["backbone.branches"], ev, p
    )


def _stage_branch(config, run, p, model, data, tcfg, protocols) -> dict[str, Any]:
    if p.specialised_init and _resume(config, run, "branch") is None:
        model.specialise_branches()
    criterion = CMLoss(
        model.num_classes,
        len(model.branches),
        coupling_pairs(model),
        model.embedding_size,
        p.center_factor,
        p.dist_factor,
        p.update_factor,
        miner=p.branch_miner,
    )
    loss_fn = branch_loss_fn(
        model.scales,
        model.num_classes,
        train_trunk=bool(p.train_trunk),
        trunk_bn=p.trunk_bn,
        augment=p.augment,
        **_views(p),
    )
    frozen = [] if p.train_trunk else ["backbone.trunk"]
    ev = _evaluator(protocols, model, tcfg.device, keep_branches=True)
    return _fit(config, run, "branch", model, criterion, loss_fn, data, tcfg, frozen, ev, p)


def _side_by_side(metrics: dict[str, Any], scales) -> list[dict[str, Any]]:
    rows = []
    for key in [*scales, "hr", "mean"]:
        trunk = [v for k, v in metrics.items() if k.endswith(f"/acc_{key}") and "/branch_" not in k]
        branch = [v for k, v in metrics.items() if k.endswith(f"/branch_acc_{key}")]
        if trunk or branch:
            rows.append(
                {
                    "resolution": f"{key} px" if isinstance(key, int) else key,
                    "trunk": trunk[0] if trunk else "",
                    "branches": branch[0] if branch else "",
                }
            )
    return rows


def _verdict(rows: list[dict[str, Any]], pairs: int | None) -> str:
    """One honest line: do the coupled branches beat the trunk on the mean LR accuracy of this run?"""
    mean = next((r for r in rows if r["resolution"] == "mean"), None)
    if not mean or mean["trunk"] == "" or mean["branches"] == "":
        return ""
    gain = float(mean["branches"]) - float(mean["trunk"])
    counted = f"{pairs} pairs" if pairs else "pairs not counted by the protocol"
    return (
        f"coupled branches {'above' if gain > 0 else 'NOT above'} the trunk on mean LR accuracy "
        f"({mean['branches']:.4f} vs {mean['trunk']:.4f}, {gain:+.4f}; one run, {counted})"
    )


@recipe(params=DcrParams, stages=STAGES)
def dcr_recipe(config: PipelineConfig, run: RunDir, p: DcrParams) -> dict[str, Any]:
    """Train DCR: trunk then coupled branches (or one ``--stage``), evaluate per resolution."""
    stages = [config.stage] if config.stage else ["trunk", "branch"]
    seed_everything(config.seed)  # model and centre initialisation are part of the run's seed
    size = _image_size(config)
    scface = stages == ["scface"]
    scales = config.kind_params("backbone").get("scales", p.scales)
    data = _dataset(config, "dcr-scface" if scface else "synthetic-lowres", size, scales)
    overrides = {**(QUICK_BACKBONE if config.quick else {}), "num_classes": int(data.num_classes), "image_size": size}
    if "scales" not in config.kind_params("backbone"):
        overrides["scales"] = tuple(p.scales)
    model = build_backbone(config, **overrides)
    if not hasattr(model, "branches"):
        raise FacerecError(f"recipe dcr needs a DCR backbone (dcr-trunk, dcr-trunk-paper), not {config.backbone!r}")
    if scface:
        root = config.kind_params("dataset").get("root")
        given = config.kind_params("protocol")
        protocols = _protocols(
            config, size, "dcr-scface", **({"data": root} if root and not {"data", "root"} & set(given) else {})
        )
    else:
        # scored at the scales the model has branches for (recipe.scales), unless protocol.scales is given
        protocols = _protocols(config, size, "dcr-synthetic-lowres", scales=tuple(model.scales))
    preset = DEFAULTS["quick" if config.quick else "paper"]
    results: dict[str, Any] = {}
    notes = [
        f"images at {size} px; scales {list(model.scales)}; branch design {model.design!r}; "
        f"normalised embeddings {model.trunk.normalized_embeddings}; {int(data.num_classes)} classes",
        f"training views: {p.lowres} low-resolution path, "
        + (
            "aug-plus (crop, colour jitter, grey, blur, flip)"
            if p.aug_plus
            else "flip"
            if p.augment
            else "no augmentation"
        )
        + f"; sampler {p.sampler}"
        + (f" (m={p.m_per_class})" if p.sampler != "random" else "")
        + f"; trunk miner {p.trunk_miner}, branch miner {p.branch_miner}",
    ]
    for stage in stages:
        tcfg = train_config(config, preset)
        if stage == "branch" and len(stages) > 1 and p.branch_steps:
            tcfg = tcfg.evolve(steps=int(p.branch_steps), epochs=None)
        tcfg = _paper_evaluation(config, tcfg, data, protocols, stage)
        if stage in ("branch", "scface") and (p.init or stage == "branch" and "trunk" not in stages):
            source = p.init or run.checkpoint("trunk")
            if not p.init and not source.is_file():
                raise FacerecError(
                    f"--stage branch needs a trained trunk: run --stage trunk into {run.path} "
                    "first, or give --param recipe.init=WEIGHTS"
                )
            fresh = load_init(model, source)
            notes.append(
                f"{stage}: started from {source}"
                + (f" (classifiers re-initialised for {model.num_classes} classes)" if fresh else "")
            )
        if stage == "trunk":
            out = _stage_trunk(config, run, p, model, data, tcfg, protocols)
        elif stage == "branch":
            out = _stage_branch(config, run, p, model, data, tcfg, protocols)
        else:  # SCface: the surveillance images are already low resolution: no synthesis
            loss_fn = trunk_loss_fn((), model.num_classes, p.augment, **_views(p))
            ev = _evaluator(protocols, model, tcfg.device, keep_branches=True)
            out = _fit(
                config,
                run,
                "scface",
                model,
                _trunk_criterion(model, p),
                loss_fn,
                data,
                tcfg,
                ["backbone.branches"],
                ev,
                p,
            )
        # per-fold spread and thresholds stay in log.jsonl; the summary keeps accuracies
        results.update(
            {
                f"{stage}/{k}": v
                for k, v in out.items()
                if isinstance(v, (int, float, bool))
                and "/acc_std_" not in k
                and "/threshold_" not in k
                and "/branch_acc_std_" not in k
                and "/branch_threshold_" not in k
            }
        )
    save_backbone(run, model)
    if not scface:
        final = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith(f"{stages[-1]}/")}
        rows = _side_by_side(final, model.scales)
        tables = {"Verification accuracy per resolution (HR image 1 vs image 2 at that resolution)": rows}
        results["per_resolution"] = rows
        pairs = [int(v) for k, v in final.items() if k.endswith("/pairs")]
        verdict = _verdict(rows, pairs[0] if pairs else None)
        if verdict:
            notes.append(verdict)
            results["verdict"] = verdict
    else:
        tables = {}
    write_summary(run, config, {k: v for k, v in results.items() if not isinstance(v, list)}, tables, "\n".join(notes))
    if not scface and stages[-1] == "branch":
        results.update(
            {
                f"{r['resolution']}: trunk | branches": f"{r['trunk']:.4f} | {r['branches']:.4f}"
                for r in results["per_resolution"]
                if r["trunk"] != "" and r["branches"] != ""
            }
        )
    return results
