"""Recipe ``dvg``: the DVG-Face workflow for any backbone, as ``facerun --backbone B --generator dvg`` runs it.

1. a face model: the backbone trained with cross-entropy on the real NIR-VIS data (or released
   weights via ``--param recipe.pretrained=PATH``: the paper starts from LightCNN-29 v2);
2. the identity sampler (a VAE over the face model's identity features) and the dual generator;
3. ``num_pairs`` generated NIR/VIS pairs of new identities (written to LMDB/folder/list, and a grid);
4. two fine-tunings from the same face model, each stage I (head only) then stage II (all layers,
   lr x0.4573 at each third of the stage as the paper's every-5-of-15-epochs): WITHOUT generated
   data (cross-entropy) and WITH it (cross-entropy + the contrastive loss on generated pairs);
5. both evaluated on the NIR-VIS protocol (rank-1, VR@FAR), with a comparison table and ROC curves.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from typing import Any

import facerec
import numpy as np
import torch
import torch.nn.functional as F
from facerec import pipeline as P
from facerec.api import Backbone, TensorDataset
from facerec.engine.trainer import Trainer
from facerec.errors import FacerecError, ParameterError
from torch import Tensor

from .losses import contrastive_pair_loss, derangement
from .pairs import CachedDataset, dataset_modality

STAGE2_DECAY = 0.457305051927326  # the originals' lr factor (every 5 of 15 epochs)

QUICK: dict[str, Any] = {
    "pretrained": None,          # released backbone weights (e.g. LightCNN_29Layers_V2_checkpoint.pth.tar)
    "pretrain_steps": 600,       # face-model training on real data when no weights are given
    "pretrain_lr": 2e-3,
    "pretrain_head": "norm-softmax",  # its own classifier, as the released LightCNN's (None: the recognition head)
    "sampler_steps": 200,
    "generator_steps": 300,
    "generator_batch": 8,
    "num_pairs": 512,
    "batch_size": 32,            # real images per step (+ as many generated pairs in stage II)
    "stage1_steps": 20,
    "stage2_steps": 60,
    "finetune_lr": 1e-3,         # the paper's; 1e-2 undid the pretraining in 60 steps (rank-1 0.063 -> 0.033)
    "contrastive_weight": 0.1,  # paper: 0.001; larger so that a few dozen steps show its effect
    "write_generated": "lmdb",    # lmdb, folder, list or none
}
PAPER: dict[str, Any] = {**QUICK, "pretrain_steps": 20000, "pretrain_lr": 1e-3, "pretrain_head": None,
                         "sampler_steps": 20000,
                         "generator_steps": 60000, "num_pairs": 100000, "batch_size": 64, "stage1_steps": 4000,
                         "stage2_steps": 24000, "finetune_lr": 1e-3, "contrastive_weight": 0.001}
DEFAULT_DATASET = "synthetic-nir-vis"
QUICK_IDS = 100
DEFAULT_PROTOCOL = "synthetic-nir-vis"


def _knobs(config: P.PipelineConfig) -> dict[str, Any]:
    knobs = config.recipe_params(PAPER if not config.quick else QUICK)
    if knobs["pretrain_head"] is not None:
        try:  # the registry's own lookup: close matches, dist:name, duplicates
            facerec.registry.find("head", knobs["pretrain_head"])
        except FacerecError as exc:
            raise ParameterError(f"recipe.pretrain_head: {exc}") from None
    if knobs["write_generated"] is None:  # --param recipe.write_generated=none parses as None
        knobs["write_generated"] = "none"
    if knobs["write_generated"] not in ("lmdb", "folder", "list", "none"):
        raise ParameterError(f"recipe.write_generated must be lmdb, folder, list or none, got {knobs['write_generated']!r}")
    for key in ("sampler_steps", "generator_steps", "generator_batch", "num_pairs", "batch_size", "stage1_steps",
                "stage2_steps"):
        if not isinstance(knobs[key], int) or knobs[key] < 1:
            raise ParameterError(f"recipe.{key} must be a positive integer, got {knobs[key]!r}")
    return knobs


class _Batches:
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


def recognition_loss(weight: float):
    """CE on real data; with generated pairs in the batch, + ``weight`` x the DVG-Face contrastive loss.

    Real and generated images go through the backbone in ONE call (the original makes three).
    """

    def loss_fn(batch: Mapping[str, Tensor], modules: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        real = batch["image"]
        if "fake_nir" not in batch:
            out = modules["head"](_embed(modules["backbone"], real), batch["label"])
            return {"loss": out.loss, "ce": out.loss.detach()}
        b = len(real)
        emb = _embed(modules["backbone"], torch.cat([real, batch["fake_nir"], batch["fake_vis"]]))
        e_real, fn, fv = emb[:b], emb[b: 2 * b], emb[2 * b:]
        out = modules["head"](e_real, batch["label"])
        ct = contrastive_pair_loss(F.normalize(fn, dim=1), F.normalize(fv, dim=1), batch["perm"])
        return {"loss": out.loss + weight * ct, "ce": out.loss.detach(), "contrastive": ct.detach()}

    return loss_fn


def _train(config: P.PipelineConfig, run: P.RunDir, name: str, backbone: Any, head: Any, batches: _Batches,
           loss_fn: Any, defaults: dict[str, Any], frozen: tuple[str, ...] = ()) -> dict[str, Any]:
    cfg = P.train_config(config, {"batch_size": batches.batch_size, **defaults})
    batches.batch_size = cfg.batch_size
    trainer = Trainer({"backbone": backbone, "head": head}, loss_fn, batches, cfg, run_dir=run.path / "stages" / name,
                      frozen=frozen, name=name)
    result = trainer.fit()
    backbone.requires_grad_(True)  # frozen stages switch requires_grad off
    head.requires_grad_(True)
    return result


def _finetune(config: P.PipelineConfig, run: P.RunDir, arm: str, face: Any, head: Any, dataset: Any, knobs: dict,
              pairs: tuple[Tensor, Tensor] | None) -> tuple[Any, dict[str, Any]]:
    backbone, head = copy.deepcopy(face), copy.deepcopy(head)
    sgd = {"optimizer": "sgd", "lr": knobs["finetune_lr"], "momentum": 0.9, "weight_decay": 2e-4}
    s1 = _train(config, run, f"{arm}-stage1", backbone, head, _Batches(dataset, knobs["batch_size"], config.seed + 11),
                recognition_loss(0.0), {**sgd, "steps": knobs["stage1_steps"]}, frozen=("backbone",))
    n2 = knobs["stage2_steps"]
    s2 = _train(config, run, f"{arm}-stage2", backbone, head, _Batches(dataset, knobs["batch_size"], config.seed + 12, pairs),
                recognition_loss(knobs["contrastive_weight"]),
                {**sgd, "steps": n2, "schedule": "step", "gamma": STAGE2_DECAY, "step_size": max(1, n2 // 3)})
    return backbone, {"stage1": s1, "stage2": s2}


def _sample_pairs(gen: Any, n: int, seed: int, device: str, size: int) -> tuple[Tensor, Tensor]:
    """``n`` generated pairs as canonical images at the real data's ``size`` (batched with real images)."""
    g = torch.Generator().manual_seed(seed)
    nirs, viss = [], []
    for start in range(0, n, 64):
        nir, vis = gen.sample_pairs(min(64, n - start), generator=g, device=device)
        if nir.shape[-1] != size:
            nir, vis = (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) for x in (nir, vis))
        nirs.append(nir.cpu())
        viss.append(vis.cpu())
    return torch.cat(nirs), torch.cat(viss)


def _write_generated(run: P.RunDir, pairs: tuple[Tensor, Tensor], fmt: str) -> str | None:
    from facerec.data.grid import save_grid

    nir, vis = pairs
    k = min(8, len(nir))
    grid = torch.stack([nir[:k], vis[:k]], dim=1).flatten(0, 1)  # NIR, VIS of one identity side by side
    save_grid(grid, run.file("pictures/generated_pairs.png"), labels=torch.arange(k).repeat_interleave(2),
              captions=["NIR", "VIS"] * k, ncol=8)
    if fmt == "none":
        return None
    from facerec.data.writers import write_dataset

    n = len(nir)
    data = TensorDataset(torch.arange(n).repeat(2), images=torch.cat([nir, vis]),
                         modality=torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)]))
    out = run.path / f"generated.{fmt}" if fmt == "lmdb" else run.path / "generated"
    write_dataset(data, out, fmt, overwrite=True, source="dvg generated pairs")
    return str(out)


def _roc_figure(run: P.RunDir, curves: dict[str, tuple[Any, Any]], title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for label, (fpr, tpr) in curves.items():
        ax.plot([max(float(f), 1e-5) for f in fpr], [float(t) for t in tpr], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("verification rate")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    run.save_png("pictures/roc_comparison.png", fig)
    plt.close(fig)


def _roc_points(proto: Any, artefacts: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """ROC points from a protocol's artefacts: given directly, or from the probe x gallery ``scores``
    of the synthetic NIR-VIS protocol (gallery = the first ``num_ids`` plan items)."""
    for f, t in (("fpr", "tpr"), ("roc_fpr", "roc_tpr")):
        if f in artefacts and t in artefacts:
            return artefacts[f], artefacts[t]
    roc = artefacts.get("roc")
    if isinstance(roc, Mapping) and "fpr" in roc:
        return roc["fpr"], roc["tpr"]
    scores, plan, n = artefacts.get("scores"), getattr(proto, "plan", None), getattr(proto, "num_ids", None)
    if scores is None or plan is None or n is None:
        return None
    ids = torch.as_tensor(plan["identity"])
    same = (ids[n:, None] == ids[None, :n]).numpy()
    scores = np.asarray(scores)
    if scores.shape != same.shape:
        return None
    from facerec import metrics

    curve = metrics.roc(scores.ravel(), same.ravel())
    return curve.fpr, curve.tpr


def _results(proto: Any, arms: dict[str, Any], device: str) -> dict[str, Any]:
    """Evaluate every arm; protocols that render their images (the synthetic ones) render them ONCE
    and score each arm's features, instead of rendering again per model."""
    for m in arms.values():
        m.eval()
    if not all(hasattr(proto, a) for a in ("images", "keys", "evaluate_features")):
        with torch.no_grad():
            return {arm: proto.evaluate(m, device=device) for arm, m in arms.items()}
    from facerec.inference import embed_tensor

    keys = proto.keys
    size = getattr(proto, "image_size", None) or P.canonical_size(next(iter(arms.values())))
    feats: dict[str, list[Tensor]] = {arm: [] for arm in arms}
    for start in range(0, len(keys), 256):
        images = proto.images(range(start, min(start + 256, len(keys))), size)
        for arm, m in arms.items():
            feats[arm].append(embed_tensor(m, images, device=device, flip=bool(getattr(proto, "flip", False))))
    return {arm: proto.evaluate_features(dict(zip(keys, torch.cat(f)))) for arm, f in feats.items()}


def _evaluate(run: P.RunDir, protocols: dict[str, Any], arms: dict[str, Any], device: str) -> tuple[dict, list, dict]:
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, tuple]] = {n: {} for n in protocols}
    for name, proto in protocols.items():
        for arm, result in _results(proto, arms, device).items():
            small = {k: v for k, v in result.artefacts.items() if k != "scores"}  # the score matrix is large
            run.write_json(f"eval/{arm}-{name}.json", {"metrics": dict(result.metrics), "convention": result.convention,
                                                       "artefacts": small})
            metrics.update({f"{arm}/{name}/{k}": float(v) for k, v in result.metrics.items()})
            rows.append({"model": arm, "protocol": name, **{k: float(v) for k, v in result.metrics.items()}})
            pts = _roc_points(proto, result.artefacts)
            if pts is not None:
                curves[name][arm] = pts
    for name, per_arm in curves.items():
        if per_arm:
            _roc_figure(run, per_arm, f"{name}: with vs without generated pairs")
    return metrics, rows, curves


def dvg_recipe(config: P.PipelineConfig, run: P.RunDir) -> dict[str, Any]:
    """DVG-Face: face model, identity sampler + dual generator, generated pairs, fine-tuning with/without them."""
    knobs = _knobs(config)
    if not config.generator:
        raise FacerecError("recipe 'dvg' needs --generator (dvg or dvg-neurips)")
    device = config.device
    backbone_cls = facerec.load("backbone", config.backbone)
    quick = dict(getattr(backbone_cls, "quick_params", {}) or {}) if config.quick else {}
    face: Backbone = P.build_backbone(config, **quick)
    small = {"num_ids": QUICK_IDS} if config.quick else {}  # fewer synthetic identities for CPU minutes
    dataset = P.build_dataset(config, face, name=config.dataset or DEFAULT_DATASET, **small)
    dataset_modality(dataset)  # fail early when the data has no modality
    dataset = CachedDataset(dataset)  # every stage draws from it many times: render/decode once
    protocols = P.build_protocols(config, face, default=(DEFAULT_PROTOCOL,), **small)
    head = P.build_head(config, face.embedding_size, dataset.num_classes, name=config.head or "lightcnn-fc2")
    metrics: dict[str, Any] = {}
    clock = [time.perf_counter()]

    def lap(phase: str) -> None:  # wall seconds per phase, reported with the metrics
        now = time.perf_counter()
        metrics[f"seconds/{phase}"] = round(now - clock[0], 1)
        clock[0] = now

    lap("data")

    # 1. the face model
    if knobs["pretrained"]:
        from facerec.weights import load_weights

        load_weights(face, knobs["pretrained"])
    else:
        # The pretraining classifier is thrown away, as the released LightCNN's 80013-class fc2 is: stage I
        # then learns the recognition head on the frozen face model.
        pre_head = head if knobs["pretrain_head"] is None else facerec.create(
            "head", knobs["pretrain_head"], embedding_size=face.embedding_size, num_classes=dataset.num_classes)
        res = _train(config, run, "pretrain", face, pre_head, _Batches(dataset, knobs["batch_size"], config.seed),
                     recognition_loss(0.0), {"optimizer": "adam", "lr": knobs["pretrain_lr"], "weight_decay": 0.0,
                                             "steps": knobs["pretrain_steps"], "schedule": "cosine"})
        metrics["pretrain/loss"] = res.get("train/loss")
        metrics["pretrain/chance_loss"] = float(np.log(dataset.num_classes))
    face.eval()
    lap("face_model")

    # 2. generator (+ identity sampler for DVG-Face)
    gen_size = int(face.input_spec.size[0])
    gen_size = 1 << max(3, min(7, gen_size.bit_length() - 1))  # the generators need a power of two <= 128
    gen = P.build(config, "generator", config.generator, image_size=gen_size, identity_dim=face.embedding_size,
                  **({"width": 0.25} if config.quick else {}))
    frozen_face = copy.deepcopy(face).to(device)
    gen.set_face_model(frozen_face)
    if hasattr(gen, "fit_identity_sampler"):
        from facerec.inference import embed_batches

        chunks = (torch.as_tensor(dataset.batch(list(range(s, min(s + 128, len(dataset)))))["image"])
                  for s in range(0, len(dataset), 128))
        feats = embed_batches(frozen_face, chunks, device=device)
        sampler_stats = gen.fit_identity_sampler(feats, steps=knobs["sampler_steps"], device=device,
                                                 seed=config.seed, progress=True)
        metrics.update({f"generator/{k}": v for k, v in sampler_stats.items()})
    log: list = []
    gen_stats = gen.fit(dataset, steps=knobs["generator_steps"], batch_size=knobs["generator_batch"], device=device,
                        seed=config.seed, progress=True, log=log)
    metrics.update({f"generator/{k}": v for k, v in gen_stats.items()})
    run.write_text("generator_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    from facerec.weights import save_weights

    save_weights(gen, run.file("generator.safetensors"), {"arch": config.generator, "image_size": gen_size})
    lap("generator")

    # 3. generated pairs
    pairs = _sample_pairs(gen, knobs["num_pairs"], config.seed + 5, device, P.canonical_size(face))
    written = _write_generated(run, pairs, knobs["write_generated"])
    metrics["generated/pairs"] = len(pairs[0])
    lap("sampling")

    # 4. fine-tune without and with the generated pairs
    arms, stages = {"face-model": face}, {}  # the face model itself: the reference both fine-tunings start from
    arms["without"], stages["without"] = _finetune(config, run, "without", face, head, dataset, knobs, None)
    arms["with"], stages["with"] = _finetune(config, run, "with", face, head, dataset, knobs, pairs)
    for arm, backbone in list(arms.items())[1:]:
        P.save_backbone(run, backbone, f"backbone-{arm}.safetensors")
    lap("finetune")

    # 5. evaluate both
    eval_metrics, rows, _ = _evaluate(run, protocols, arms, device)
    metrics.update(eval_metrics)
    lap("evaluation")
    keep = ("rank1", "vr@far=1e-02", "vr@far=1e-03", "vr@far=1e-04")
    table = [{k: v for k, v in r.items() if k in ("model", "protocol") or k in keep or "far" in k.lower()
              or "rank" in k.lower()} for r in rows]
    run.write_markdown("comparison.md", "DVG: recognition with and without generated NIR-VIS pairs",
                       {"Comparison": table},
                       text=f"Generated pairs: {len(pairs[0])}" + (f", written to {written}" if written else ""))
    P.write_summary(run, config, metrics, tables={"With vs without generated pairs": table},
                    text="Pictures: pictures/generated_pairs.png, pictures/roc_comparison.png")
    return metrics


dvg_recipe.params = QUICK  # type: ignore[attr-defined]
