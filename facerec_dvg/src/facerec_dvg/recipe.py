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

import copy
import json
from typing import Any

import facerec
import numpy as np
from facerec.api import Backbone
from facerec.engine import seed_everything
from facerec.errors import FacerecError
from facerec.recipes import (
    CachedDataset,
    PipelineConfig,
    RunDir,
    build,
    build_backbone,
    build_head,
    canonical_size,
    recipe,
    save_backbone,
    write_summary,
)

from . import report as R
from .evaluation import evaluate_models
from .finetune import Batches, finetune, recognition_loss, train_stage
from .generated_pairs import real_pairs, resized, sample_pairs, write_generated
from .pairs import dataset_modality
from .recipe_params import DvgParams
from .resume import check_identity_sampler, generator_metadata, identity_sampler_stage, loop_checkpoint, loop_finished
from .setup_table import Stages, device_name

DEFAULT_DATASET = "synthetic-nir-vis"
DEFAULT_PROTOCOL = "synthetic-nir-vis"
DEFAULT_HEAD = "lightcnn-fc2"  # the released LightCNN's classifier layer
#: quick preset sizes (each overridable with --param dataset.* / protocol.* / generator.*)
QUICK_PAIRED = {"num_ids": 40}  # paired NIR-VIS identities (CASIA: 357)
QUICK_PROTOCOL = {"num_ids": 200, "nir_per_id": 8}  # held-out identities, NIR probes each
QUICK_GENERATOR = {"image_size": 64, "width": 0.25}
PRETRAIN_ID_OFFSET = 100_000  # synthetic pretraining identities: disjoint from the paired set and the protocols


def _data_size(face: Any, gen_size: int) -> int:
    """Real images are kept at the larger of what the face model and the generator want (the generator
    trains on real detail at its own size; the backbone's input spec resizes for it)."""
    return max(canonical_size(face), round(gen_size * 144 / 128))


@recipe(params=DvgParams, defaults={"head": DEFAULT_HEAD, "dataset": DEFAULT_DATASET, "protocols": (DEFAULT_PROTOCOL,)})
def dvg_recipe(config: PipelineConfig, run: RunDir, params: DvgParams) -> dict[str, Any]:
    """DVG-Face: face model, identity sampler + dual generator, generated pairs, fine-tuning with/without them.

    Needs --generator dvg (DVG-Face) or dvg-neurips (DVG); defaults: dataset and protocol synthetic-nir-vis,
    head lightcnn-fc2."""
    if not config.generator:
        raise FacerecError("recipe 'dvg' needs --generator (dvg or dvg-neurips)")
    device = config.device
    config.dataset = config.dataset or DEFAULT_DATASET  # resolved names: config.json and summary.md say what ran
    config.protocols = config.protocols or (DEFAULT_PROTOCOL,)
    seed_everything(
        config.seed
    )  # every init from --seed (torch seeds each process at random): runs repeat, resume is exact
    backbone_cls = facerec.load("backbone", config.backbone)
    quick = dict(getattr(backbone_cls, "quick_params", {}) or {}) if config.quick else {}
    face: Backbone = build_backbone(config, **quick)
    canonical = canonical_size(face)
    gen_size = int(face.input_spec.size[0])
    gen_size = 1 << max(3, min(7, gen_size.bit_length() - 1))  # the generators need a power of two <= 128
    gen_params = dict(QUICK_GENERATOR) if config.quick else {}
    gen = build(
        config,
        "generator",
        config.generator,
        image_size=gen_params.pop("image_size", gen_size),
        identity_dim=face.embedding_size,
        **gen_params,
    )
    gen_size = int(gen.image_size)
    check_identity_sampler(gen, params.sampler_steps)
    size = _data_size(face, gen_size)
    synthetic_data = config.dataset == DEFAULT_DATASET
    paired = build(
        config,
        "dataset",
        config.dataset,
        image_size=size,
        **({**(QUICK_PAIRED if config.quick else {}), "nuisance": params.nuisance} if synthetic_data else {}),
    )
    dataset_modality(paired)  # fail early when the data has no modality
    # every stage draws from it many times: render/decode once, kept as 8-bit images
    dataset = CachedDataset(paired, storage="uint8", fill=True)
    protocols = {
        n: build(
            config,
            "protocol",
            n,
            image_size=size,
            **(
                {**(QUICK_PROTOCOL if config.quick else {}), "nuisance": params.nuisance}
                if n == DEFAULT_PROTOCOL
                else {}
            ),
        )
        for n in config.protocols
    }
    head = build_head(config, face.embedding_size, dataset.num_classes, name=config.head or DEFAULT_HEAD)
    config.head = config.head or DEFAULT_HEAD
    metrics: dict[str, Any] = {"device": device_name(device)}
    stages = Stages(device)
    paired_ids = int(dataset.labels.unique().numel())

    # 1. the face model
    if params.pretrained:
        facerec.load_weights(face, params.pretrained)
        face.to(device)
        stages.done("face model: released weights", str(params.pretrained), "-", "-", "-", canonical)
    else:
        pre_data = CachedDataset(  # VIS faces only: no modality needed
            facerec.create(
                "dataset",
                "synthetic",
                num_ids=params.pretrain_ids,
                per_id=params.pretrain_per_id,
                image_size=canonical,
                id_offset=PRETRAIN_ID_OFFSET,
                nuisance=params.nuisance,
            ),
            storage="uint8",
            fill=True,
        )
        # Its own classifier is thrown away, as the released LightCNN's 80013-class fc2 is: stage I then
        # learns the recognition head on the frozen face model.
        pre_head = facerec.create(
            "head",
            params.pretrain_head or config.head,
            embedding_size=face.embedding_size,
            num_classes=params.pretrain_ids,
        )
        res = train_stage(
            config,
            run,
            "pretrain",
            face,
            pre_head,
            Batches(pre_data, params.batch_size, config.seed),
            recognition_loss(0.0),
            {
                "optimizer": "adam",
                "lr": params.pretrain_lr,
                "weight_decay": 0.0,
                "steps": params.pretrain_steps,
                "schedule": "cosine",
                "log_every": 50,
            },
        )
        metrics["pretrain/loss"] = res.get("train/loss")
        metrics["pretrain/chance_loss"] = float(np.log(params.pretrain_ids))
        stages.done(
            "face model: pretraining",
            "synthetic VIS faces",
            params.pretrain_ids,
            len(pre_data),
            f"{res['step']} x {params.batch_size}",
            canonical,
        )
        del pre_data
    face.eval()
    save_backbone(run, face, "backbone-face-model.safetensors")

    # 2. generator (+ identity sampler for DVG-Face)
    frozen_face = copy.deepcopy(face).to(device)
    gen.set_face_model(frozen_face)
    if hasattr(gen, "fit_identity_sampler"):  # released: frozen; else trained (resumably)
        metrics.update(
            identity_sampler_stage(config, run, gen, frozen_face, dataset, params.sampler_steps, stages, paired_ids)
        )
    log: list = []
    gen_stats = gen.fit(
        dataset,
        steps=params.generator_steps,
        batch_size=params.generator_batch,
        device=device,
        seed=config.seed,
        progress=True,
        log=log,
        checkpoint=loop_checkpoint(config, run, "generator", generator_metadata(config.generator, gen)),
    )
    loop_finished("generator", gen_stats.pop("step", params.generator_steps), params.generator_steps)
    metrics.update({f"generator/{k}": v for k, v in gen_stats.items()})
    run.write_text("generator_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    from facerec.weights import save_weights

    save_weights(gen, run.file("generator.safetensors"), generator_metadata(config.generator, gen))
    stages.done(
        f"dual generator ({config.generator})",
        f"{config.dataset} (paired NIR-VIS)",
        paired_ids,
        len(dataset),
        f"{params.generator_steps} x {params.generator_batch} pairs",
        gen_size,
    )

    # 3. generated pairs
    generated = sample_pairs(gen, params.num_pairs, config.seed + 5, device)
    written = write_generated(run, generated, params.write_generated)
    pairs = resized(generated, size)
    metrics["generated/pairs"] = len(pairs[0])
    real = real_pairs(dataset, 64, config.seed + 7)
    check = R.identity_check(face, generated, resized(real, gen_size), device)
    for row in check:
        key = "generated" if row["pairs"].startswith("generated") else "real"
        same, diff = (float(row[c].split(" ")[0]) for c in ("same identity NIR-VIS cosine", "different identities"))
        metrics[f"identity-check/{key}/same-cos"], metrics[f"identity-check/{key}/different-cos"] = same, diff
    stages.done("sampling", "new identities from the sampler", params.num_pairs, 2 * params.num_pairs, "-", gen_size)

    # 4. fine-tune without and with the generated pairs, from the same face model (recipe.seeds times)
    tuned: dict[str, list[Any]] = {"without": [], "with": []}
    for k in range(params.seeds):
        for arm, arm_pairs in (("without", None), ("with", pairs)):
            model, steps = finetune(config, run, arm, face, head, dataset, params, arm_pairs, config.seed + k)
            tuned[arm].append(model)
    for arm, runs in tuned.items():
        save_backbone(run, runs[0], f"backbone-{arm}.safetensors")
    stages.done(
        "fine-tuning without / with generated pairs" + (f" x {params.seeds} seeds" if params.seeds > 1 else ""),
        f"{config.dataset} (+ {len(pairs[0])} generated pairs)",
        paired_ids,
        len(dataset),
        f"{steps['stage1']['step']} + {steps['stage2']['step']} each",
        canonical,
    )

    # 5. evaluate all
    eval_metrics, comparison, other_rows = evaluate_models(protocols, face, tuned, device, run)
    metrics.update(eval_metrics)
    proto0 = next(iter(protocols.values()))
    stages.done(
        "evaluation",
        ", ".join(config.protocols),
        getattr(proto0, "num_ids", "-"),
        len(getattr(proto0, "keys", [])) or "-",
        "-",
        size,
    )

    # 6. report
    pictures, messages = R.draw_pictures(run.path, comparison, generated, resized(real, gen_size))
    for m in messages:
        print(m)
    tables: dict[str, Any] = {}
    text = ""
    if comparison is not None:
        metrics.update(comparison.metrics())
        run.headline = R.headline(comparison, params.seeds)
        text = "**" + R.verdict(comparison.difference()) + "**"
        tables["Comparison (held-out identities, NIR probes vs VIS gallery, ± bootstrap SE over probes)"] = (
            R.comparison_rows(comparison)
        )
    if other_rows:
        tables["Other protocols"] = other_rows
    tables["Generated identities (face-model cosine, NIR vs VIS)"] = check
    tables["Pictures"] = R.pictures_section(pictures, messages)
    changed = (
        []
        if not config.quick
        else [
            f"contrastive weight {params.contrastive_weight} (paper 0.001)",
            f"stage I / II {params.stage1_steps} / {params.stage2_steps} steps (paper 4 / 15 epochs)",
            f"face model pretrained from scratch on {params.pretrain_ids} synthetic VIS identities "
            "(paper: released LightCNN-29 v2 from MS-Celeb-1M)",
        ]
    )
    if changed:
        text += "\n\nQuick preset, changed from the paper: " + "; ".join(changed) + "."
    metrics["seconds/stages"] = {r["stage"]: r["wall s"] for r in stages.rows}
    write_summary(
        run,
        config,
        {k: v for k, v in metrics.items() if not isinstance(v, dict)},
        tables=tables,
        text=text,
        setup=stages.rows,
        title="DVG-Face: recognition with and without generated NIR-VIS pairs",
    )
    if written:
        metrics["generated/written_to"] = written
    return metrics
