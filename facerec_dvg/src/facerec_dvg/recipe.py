"""Recipe ``dvg``: the DVG-Face workflow for any backbone, as ``facerun --backbone B --generator dvg`` runs it.

The paper's setting in miniature (quick preset) or at the released sizes (paper preset):

1. a face model: released weights (``recipe.pretrained``; the paper starts from LightCNN-29 v2, trained
   on MS-Celeb-1M), else the backbone pretrained on many synthetic VIS identities (their role);
2. the paired NIR-VIS training set (few identities: CASIA NIR-VIS 2.0's role); on it the identity
   sampler (a VAE over the face model's identity features) and the dual generator, with the released losses;
3. ``num_pairs`` generated NIR/VIS pairs of new identities (written to LMDB/folder/list, and drawn);
4. fine-tunings from the same face model, each stage I (head only) then stage II (all layers, lr x0.4573
   at each third as the paper's every-5-of-15-epochs): WITHOUT the generated pairs (cross-entropy) and
   WITH them (cross-entropy + the contrastive loss on generated pairs), ``recipe.seeds`` times each;
5. all evaluated on held-out identities (NIR probes vs a VIS gallery; rank-1 and VR@FAR=1e-2 with
   paired-bootstrap errors), the face model also VIS vs VIS; headline, summary.md, pictures.
"""

from __future__ import annotations

import contextlib
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
from facerec.engine import seed_everything
from facerec.engine.trainer import Trainer
from facerec.errors import FacerecError, ParameterError
from torch import Tensor

from . import report as R
from .losses import contrastive_pair_loss, derangement
from .pairs import NIR, VIS, CachedDataset, dataset_modality
from .stats import ProbeScores
from .resume import (check_identity_sampler, generator_metadata, identity_sampler_stage, loop_checkpoint,
                     loop_finished, trainer_finished, trainer_resume)

STAGE2_DECAY = 0.457305051927326  # the originals' lr factor (every 5 of 15 epochs)

QUICK: dict[str, Any] = {
    "pretrained": None,          # released backbone weights (e.g. LightCNN_29Layers_V2_checkpoint.pth.tar)
    "pretrain_ids": 300,         # synthetic VIS identities the face model learns from (MS-Celeb-1M's role)
    "pretrain_per_id": 20,
    "pretrain_steps": 900,
    "pretrain_lr": 2e-3,
    "pretrain_head": "norm-softmax",  # its own classifier, thrown away as the released LightCNN's fc2 is
    "sampler_steps": 200,
    "generator_steps": 350,
    "generator_batch": 8,
    "num_pairs": 512,
    "batch_size": 32,            # real images per step (+ as many generated pairs in stage II)
    "stage1_steps": 100,
    "stage2_steps": 100,
    "finetune_lr": 1e-3,         # the paper's
    "contrastive_weight": 1.0,   # paper: 0.001 (see the plugin README for the quick preset's value)
    "seeds": 1,                  # fine-tunings per arm (mean ± std over seeds)
    "write_generated": "lmdb",   # lmdb, folder, list or none
    # how hard the synthetic faces vary per sample (pretraining, paired set, protocol): "controlled" is
    # CASIA NIR-VIS 2.0's capture (aligned, near-frontal, plain backgrounds); "default" the wild renderer
    "nuisance": "controlled",
}
PAPER: dict[str, Any] = {**QUICK, "pretrain_ids": 10000, "pretrain_per_id": 20, "pretrain_steps": 20000,
                         "pretrain_lr": 1e-3, "pretrain_head": None, "sampler_steps": 20000,
                         "generator_steps": 60000, "num_pairs": 100000, "batch_size": 64, "stage1_steps": 4000,
                         "stage2_steps": 24000, "finetune_lr": 1e-3, "contrastive_weight": 0.001,
                         "nuisance": "default"}
DEFAULT_DATASET = "synthetic-nir-vis"
DEFAULT_PROTOCOL = "synthetic-nir-vis"
#: quick preset sizes (each overridable with --param dataset.* / protocol.* / generator.*)
QUICK_PAIRED = {"num_ids": 40}                       # paired NIR-VIS identities (CASIA: 357)
QUICK_PROTOCOL = {"num_ids": 200, "nir_per_id": 8}   # held-out identities, NIR probes each
QUICK_GENERATOR = {"image_size": 64, "width": 0.25}
PRETRAIN_ID_OFFSET = 100_000  # synthetic pretraining identities: disjoint from the paired set and the protocols


def _knobs(config: P.PipelineConfig) -> dict[str, Any]:
    knobs = config.recipe_params(PAPER if not config.quick else QUICK)
    if knobs["pretrain_head"] is not None:
        try:  # the registry's own lookup: close matches, dist:name, duplicates
            facerec.registry.find("head", knobs["pretrain_head"])
        except FacerecError as exc:
            raise ParameterError(f"recipe.pretrain_head: {exc}") from None
    from facerec.data.synthetic import resolve_nuisance

    resolve_nuisance(knobs["nuisance"], "recipe.nuisance")  # an unknown preset fails before any work
    if knobs["write_generated"] is None:  # --param recipe.write_generated=none parses as None
        knobs["write_generated"] = "none"
    if knobs["write_generated"] not in ("lmdb", "folder", "list", "none"):
        raise ParameterError(f"recipe.write_generated must be lmdb, folder, list or none, got {knobs['write_generated']!r}")
    for key in ("pretrain_ids", "pretrain_per_id", "pretrain_steps", "sampler_steps", "generator_steps",
                "generator_batch", "num_pairs", "batch_size", "stage1_steps", "stage2_steps", "seeds"):
        low = 0 if key == "sampler_steps" else 1  # 0: the (released) identity sampler stays as it is
        if isinstance(knobs[key], bool) or not isinstance(knobs[key], int) or knobs[key] < low:
            raise ParameterError(f"recipe.{key} must be a {'non-negative' if low == 0 else 'positive'} integer, "
                                 f"got {knobs[key]!r}")
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


@contextlib.contextmanager
def _running_stats_frozen(module: torch.nn.Module):
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


def device_name(device: str) -> str:
    """``cpu (N threads)`` or ``cuda:0 (NVIDIA ...)``: what ran, for the report."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({torch.get_num_threads()} threads)"


class _Stages:
    """One row per stage for summary.md's setup table, with the wall time of each."""

    def __init__(self, device: str):
        self.rows: list[dict[str, Any]] = []
        self.device = device_name(device)
        self.t0 = time.perf_counter()

    def done(self, stage: str, data: str, identities: Any, images: Any, steps: Any, size: Any) -> float:
        now = time.perf_counter()
        seconds = round(now - self.t0, 1)
        self.t0 = now
        self.rows.append({"stage": stage, "data": data, "identities": identities, "images": images, "steps": steps,
                          "image size": size if size == "-" else f"{size} px", "device": self.device,
                          "wall s": f"{seconds:.1f}"})
        return seconds


def _train(config: P.PipelineConfig, run: P.RunDir, name: str, backbone: Any, head: Any, batches: _Batches,
           loss_fn: Any, defaults: dict[str, Any], frozen: tuple[str, ...] = (), seed: int | None = None) -> dict[str, Any]:
    cfg = P.train_config(config, {"batch_size": batches.batch_size, **defaults})
    if seed is not None:
        cfg = cfg.evolve(seed=seed)
    batches.batch_size = cfg.batch_size
    trainer = Trainer({"backbone": backbone, "head": head}, loss_fn, batches, cfg, run_dir=run.path / "stages" / name,
                      frozen=frozen, name=name, resume=trainer_resume(config, run, name))
    result = trainer_finished(run, name, trainer.fit())
    backbone.requires_grad_(True)  # frozen stages switch requires_grad off
    head.requires_grad_(True)
    return result


def _finetune(config: P.PipelineConfig, run: P.RunDir, arm: str, face: Any, head: Any, dataset: Any, knobs: dict,
              pairs: tuple[Tensor, Tensor] | None, seed: int) -> tuple[Any, dict[str, Any]]:
    """Stage I (head only) then stage II (all layers) from copies of ``face`` and ``head``; both arms of
    one seed draw the same real batches."""
    backbone, head = copy.deepcopy(face), copy.deepcopy(head)
    sgd = {"optimizer": "sgd", "lr": knobs["finetune_lr"], "momentum": 0.9, "weight_decay": 2e-4}
    tag = f"{arm}-seed{seed}" if knobs["seeds"] > 1 else arm
    s1 = _train(config, run, f"{tag}-stage1", backbone, head, _Batches(dataset, knobs["batch_size"], seed + 11),
                recognition_loss(0.0), {**sgd, "steps": knobs["stage1_steps"]}, frozen=("backbone",), seed=seed)
    n2 = knobs["stage2_steps"]
    s2 = _train(config, run, f"{tag}-stage2", backbone, head, _Batches(dataset, knobs["batch_size"], seed + 12, pairs),
                recognition_loss(knobs["contrastive_weight"]),
                {**sgd, "steps": n2, "schedule": "step", "gamma": STAGE2_DECAY, "step_size": max(1, n2 // 3)}, seed=seed)
    return backbone, {"stage1": s1, "stage2": s2}


def _sample_pairs(gen: Any, n: int, seed: int, device: str) -> tuple[Tensor, Tensor]:
    """``n`` generated (NIR, VIS) pairs at the generator's size, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    nirs, viss = [], []
    for start in range(0, n, 64):
        nir, vis = gen.sample_pairs(min(64, n - start), generator=g, device=device)
        nirs.append(nir.cpu())
        viss.append(vis.cpu())
    return torch.cat(nirs), torch.cat(viss)


def _resized(pairs: tuple[Tensor, Tensor], size: int) -> tuple[Tensor, Tensor]:
    """Pairs at the real data's size (so that both go through the backbone's input spec alike)."""
    if pairs[0].shape[-1] == size:
        return pairs
    return tuple(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)  # type: ignore[return-value]
                 for x in pairs)


def _real_pairs(dataset: Any, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` real (NIR, VIS) pairs of different identities of the paired set (for the pictures and the check)."""
    from .pairs import PairSampler

    sampler = PairSampler(dataset.labels, dataset_modality(dataset))
    g = torch.Generator().manual_seed(seed)
    labels = sampler.labels[sampler.anchors].unique()
    labels = labels[torch.randperm(len(labels), generator=g)[:n]]
    nir = sampler._partners(labels, NIR, g)
    vis = sampler._partners(labels, VIS, g)
    return (torch.as_tensor(dataset.batch(nir.tolist())["image"]).float(),
            torch.as_tensor(dataset.batch(vis.tolist())["image"]).float())


def _write_generated(run: P.RunDir, pairs: tuple[Tensor, Tensor], fmt: str) -> str | None:
    if fmt == "none":
        return None
    from facerec.data.writers import write_dataset

    nir, vis = pairs
    n = len(nir)
    data = TensorDataset(torch.arange(n).repeat(2), images=torch.cat([nir, vis]),
                         modality=torch.cat([torch.full((n,), NIR, dtype=torch.long),
                                             torch.full((n,), VIS, dtype=torch.long)]))
    out = run.path / f"generated.{fmt}" if fmt == "lmdb" else run.path / "generated"
    write_dataset(data, out, fmt, overwrite=True, source="dvg generated pairs")
    return str(out)


def _embed_all(models: Mapping[str, Any], images: Tensor, device: str, flip: bool) -> dict[str, Tensor]:
    from facerec.inference import embed_tensor

    return {arm: embed_tensor(m, images, device=device, flip=flip) for arm, m in models.items()}


def _evaluate(protocols: Mapping[str, Any], face: Any, tuned: Mapping[str, list[Any]], device: str,
              run: P.RunDir) -> tuple[dict[str, float], R.Comparison | None, list[dict[str, Any]]]:
    """Every model on every protocol. Protocols that render their images (the synthetic ones) render
    them ONCE for all models; the first that exposes its score matrix gives the comparison with errors.
    Returns (flat metrics, the comparison, table rows for protocols without a score matrix)."""
    models: dict[str, Any] = {"face-model": face}
    for arm, runs in tuned.items():
        for k, m in enumerate(runs):
            models[f"{arm}#{k}"] = m
    for m in models.values():
        m.eval()
    metrics: dict[str, float] = {}
    comparison: R.Comparison | None = None
    rows: list[dict[str, Any]] = []
    for name, proto in protocols.items():
        if all(hasattr(proto, a) for a in ("images", "keys", "evaluate_features")):
            size = getattr(proto, "image_size", None) or P.canonical_size(face)
            images = torch.cat([proto.images(range(s, min(s + 512, len(proto.keys))), size)
                                for s in range(0, len(proto.keys), 512)])
            feats = _embed_all(models, images, device, bool(getattr(proto, "flip", False)))
            results = {k: proto.evaluate_features(dict(zip(proto.keys, f))) for k, f in feats.items()}
        else:
            with torch.no_grad():
                results = {k: proto.evaluate(m, device=device) for k, m in models.items()}
        by_arm: dict[str, list[ProbeScores]] = {}
        for key, res in results.items():
            arm = key.split("#")[0]
            small = {k: v for k, v in res.artefacts.items() if k != "scores"}  # the score matrix is large
            run.write_json(f"eval/{key.replace('#', '-seed')}-{name}.json",
                           {"metrics": dict(res.metrics), "convention": res.convention, "artefacts": small})
            ps = R.protocol_probe_scores(proto, res.artefacts)
            if ps is not None:
                by_arm.setdefault(arm, []).append(ps)
            else:
                rows.append({"model": key, "protocol": name, **{k: float(v) for k, v in res.metrics.items()}})
            if key == "face-model" or "#" not in key or key.endswith("#0"):
                metrics.update({f"{arm}/{name}/{k}": float(v) for k, v in res.metrics.items()})
        if by_arm and comparison is None and {"with", "without"} <= set(by_arm):
            comparison = R.Comparison(protocol=name, runs=by_arm, gallery_size=int(proto.num_ids))
            comparison.vis_control = _vis_control(proto, models, device)
    return metrics, comparison, rows


def _vis_control(proto: Any, models: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The same held-out faces with VIS probes (the synthetic protocol's ``probe_modality="VIS"``):
    how good the face model is without the modality gap."""
    if getattr(proto, "probe_modality", None) != "NIR":
        return {}
    twin = copy.copy(proto)
    twin.probe_modality, twin._plan = "VIS", None
    size = getattr(twin, "image_size", None)
    images = torch.cat([twin.images(range(s, min(s + 512, len(twin.keys))), size)
                        for s in range(0, len(twin.keys), 512)])
    keep = {k: m for k, m in models.items() if "#" not in k or k.endswith("#0")}
    feats = _embed_all(keep, images, device, bool(getattr(twin, "flip", False)))
    out = {}
    for key, f in feats.items():
        res = twin.evaluate_features(dict(zip(twin.keys, f)))
        ps = R.protocol_probe_scores(twin, res.artefacts)
        if ps is not None:
            out[key.split("#")[0]] = ps
    return out


def _data_size(face: Any, gen_size: int) -> int:
    """Real images are kept at the larger of what the face model and the generator want (the generator
    trains on real detail at its own size; the backbone's input spec resizes for it)."""
    return max(P.canonical_size(face), round(gen_size * 144 / 128))


def dvg_recipe(config: P.PipelineConfig, run: P.RunDir) -> dict[str, Any]:
    """DVG-Face: face model, identity sampler + dual generator, generated pairs, fine-tuning with/without them."""
    knobs = _knobs(config)
    if not config.generator:
        raise FacerecError("recipe 'dvg' needs --generator (dvg or dvg-neurips)")
    device = config.device
    config.dataset = config.dataset or DEFAULT_DATASET  # resolved names: config.json and summary.md say what ran
    config.protocols = config.protocols or (DEFAULT_PROTOCOL,)
    seed_everything(config.seed)  # every init from --seed (torch seeds each process at random): runs repeat, resume is exact
    backbone_cls = facerec.load("backbone", config.backbone)
    quick = dict(getattr(backbone_cls, "quick_params", {}) or {}) if config.quick else {}
    face: Backbone = P.build_backbone(config, **quick)
    canonical = P.canonical_size(face)
    gen_size = int(face.input_spec.size[0])
    gen_size = 1 << max(3, min(7, gen_size.bit_length() - 1))  # the generators need a power of two <= 128
    gen_params = dict(QUICK_GENERATOR) if config.quick else {}
    gen = P.build(config, "generator", config.generator, image_size=gen_params.pop("image_size", gen_size),
                  identity_dim=face.embedding_size, **gen_params)
    gen_size = int(gen.image_size)
    check_identity_sampler(gen, knobs["sampler_steps"])
    size = _data_size(face, gen_size)
    synthetic_data = config.dataset == DEFAULT_DATASET
    paired = P.build(config, "dataset", config.dataset, image_size=size,
                     **({**(QUICK_PAIRED if config.quick else {}), "nuisance": knobs["nuisance"]} if synthetic_data else {}))
    dataset_modality(paired)  # fail early when the data has no modality
    dataset = CachedDataset(paired)  # every stage draws from it many times: render/decode once
    protocols = {n: P.build(config, "protocol", n, image_size=size,
                            **({**(QUICK_PROTOCOL if config.quick else {}), "nuisance": knobs["nuisance"]}
                               if n == DEFAULT_PROTOCOL else {}))
                 for n in config.protocols}
    head = P.build_head(config, face.embedding_size, dataset.num_classes, name=config.head or "lightcnn-fc2")
    config.head = config.head or "lightcnn-fc2"
    metrics: dict[str, Any] = {"device": device_name(device)}
    stages = _Stages(device)
    paired_ids = int(dataset.labels.unique().numel())

    # 1. the face model
    if knobs["pretrained"]:
        from facerec.weights import load_weights

        load_weights(face, knobs["pretrained"])
        face.to(device)
        stages.done("face model: released weights", str(knobs["pretrained"]), "-", "-", "-", canonical)
    else:
        pre_data = CachedDataset(
            P.registry.create("dataset", "synthetic", num_ids=knobs["pretrain_ids"], per_id=knobs["pretrain_per_id"],
                              image_size=canonical, id_offset=PRETRAIN_ID_OFFSET, nuisance=knobs["nuisance"]),
            modality=torch.full((knobs["pretrain_ids"] * knobs["pretrain_per_id"],), VIS))
        # Its own classifier is thrown away, as the released LightCNN's 80013-class fc2 is: stage I then
        # learns the recognition head on the frozen face model.
        pre_head = facerec.create("head", knobs["pretrain_head"] or config.head, embedding_size=face.embedding_size,
                                  num_classes=knobs["pretrain_ids"])
        res = _train(config, run, "pretrain", face, pre_head, _Batches(pre_data, knobs["batch_size"], config.seed),
                     recognition_loss(0.0), {"optimizer": "adam", "lr": knobs["pretrain_lr"], "weight_decay": 0.0,
                                             "steps": knobs["pretrain_steps"], "schedule": "cosine", "log_every": 50})
        metrics["pretrain/loss"] = res.get("train/loss")
        metrics["pretrain/chance_loss"] = float(np.log(knobs["pretrain_ids"]))
        stages.done("face model: pretraining", "synthetic VIS faces", knobs["pretrain_ids"], len(pre_data),
                    f"{res['step']} x {knobs['batch_size']}", canonical)
        del pre_data
    face.eval()
    P.save_backbone(run, face, "backbone-face-model.safetensors")

    # 2. generator (+ identity sampler for DVG-Face)
    frozen_face = copy.deepcopy(face).to(device)
    gen.set_face_model(frozen_face)
    if hasattr(gen, "fit_identity_sampler"):  # released: frozen; else trained (resumably)
        metrics.update(identity_sampler_stage(config, run, gen, frozen_face, dataset, knobs["sampler_steps"],
                                              stages, paired_ids))
    log: list = []
    gen_stats = gen.fit(dataset, steps=knobs["generator_steps"], batch_size=knobs["generator_batch"], device=device,
                        seed=config.seed, progress=True, log=log,
                        checkpoint=loop_checkpoint(config, run, "generator", generator_metadata(config.generator, gen)))
    loop_finished("generator", gen_stats.pop("step", knobs["generator_steps"]), knobs["generator_steps"])
    metrics.update({f"generator/{k}": v for k, v in gen_stats.items()})
    run.write_text("generator_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    from facerec.weights import save_weights

    save_weights(gen, run.file("generator.safetensors"), generator_metadata(config.generator, gen))
    stages.done(f"dual generator ({config.generator})", f"{config.dataset} (paired NIR-VIS)", paired_ids,
                len(dataset), f"{knobs['generator_steps']} x {knobs['generator_batch']} pairs", gen_size)

    # 3. generated pairs
    generated = _sample_pairs(gen, knobs["num_pairs"], config.seed + 5, device)
    written = _write_generated(run, generated, knobs["write_generated"])
    pairs = _resized(generated, size)
    metrics["generated/pairs"] = len(pairs[0])
    real = _real_pairs(dataset, 64, config.seed + 7)
    check = R.identity_check(face, generated, _resized(real, gen_size), device)
    for row in check:
        key = "generated" if row["pairs"].startswith("generated") else "real"
        same, diff = (float(row[c].split(" ")[0]) for c in ("same identity NIR-VIS cosine", "different identities"))
        metrics[f"identity-check/{key}/same-cos"], metrics[f"identity-check/{key}/different-cos"] = same, diff
    stages.done("sampling", "new identities from the sampler", knobs["num_pairs"], 2 * knobs["num_pairs"], "-", gen_size)

    # 4. fine-tune without and with the generated pairs, from the same face model (recipe.seeds times)
    tuned: dict[str, list[Any]] = {"without": [], "with": []}
    for k in range(knobs["seeds"]):
        for arm, arm_pairs in (("without", None), ("with", pairs)):
            model, steps = _finetune(config, run, arm, face, head, dataset, knobs, arm_pairs, config.seed + k)
            tuned[arm].append(model)
    for arm, runs in tuned.items():
        P.save_backbone(run, runs[0], f"backbone-{arm}.safetensors")
    stages.done("fine-tuning without / with generated pairs" + (f" x {knobs['seeds']} seeds" if knobs["seeds"] > 1 else ""),
                f"{config.dataset} (+ {len(pairs[0])} generated pairs)", paired_ids, len(dataset),
                f"{steps['stage1']['step']} + {steps['stage2']['step']} each", canonical)

    # 5. evaluate all
    eval_metrics, comparison, other_rows = _evaluate(protocols, face, tuned, device, run)
    metrics.update(eval_metrics)
    proto0 = next(iter(protocols.values()))
    stages.done("evaluation", ", ".join(config.protocols), getattr(proto0, "num_ids", "-"),
                len(getattr(proto0, "keys", [])) or "-", "-", size)

    # 6. report
    pictures, messages = R.draw_pictures(run.path, comparison, generated, _resized(real, gen_size))
    for m in messages:
        print(m)
    tables: dict[str, Any] = {}
    text = ""
    if comparison is not None:
        metrics.update(comparison.metrics())
        run.headline = R.headline(comparison, knobs["seeds"])
        text = "**" + R.verdict(comparison.difference()) + "**"
        tables["Comparison (held-out identities, NIR probes vs VIS gallery, ± bootstrap SE over probes)"] = \
            R.comparison_rows(comparison)
    if other_rows:
        tables["Other protocols"] = other_rows
    tables["Generated identities (face-model cosine, NIR vs VIS)"] = check
    tables["Pictures"] = R.pictures_section(pictures, messages)
    changed = [] if not config.quick else [
        f"contrastive weight {knobs['contrastive_weight']} (paper 0.001)",
        f"stage I / II {knobs['stage1_steps']} / {knobs['stage2_steps']} steps (paper 4 / 15 epochs)",
        f"face model pretrained from scratch on {knobs['pretrain_ids']} synthetic VIS identities "
        "(paper: released LightCNN-29 v2 from MS-Celeb-1M)"]
    if changed:
        text += "\n\nQuick preset, changed from the paper: " + "; ".join(changed) + "."
    metrics["seconds/stages"] = {r["stage"]: r["wall s"] for r in stages.rows}
    P.write_summary(run, config, {k: v for k, v in metrics.items() if not isinstance(v, dict)}, tables=tables,
                    text=text, setup=stages.rows, title="DVG-Face: recognition with and without generated NIR-VIS pairs")
    if written:
        metrics["generated/written_to"] = written
    return metrics


dvg_recipe.params = QUICK  # type: ignore[attr-defined]
