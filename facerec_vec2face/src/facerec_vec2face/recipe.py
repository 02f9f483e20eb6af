"""Recipes: ``vec2face`` (the demo: real -> features -> Vec2Face -> new identities -> FR model) and
``hsface`` (the HSFace FR recipe: IResNet-50-SE, ArcFace s=64 m=0.5, SGD, flip + random erasing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

import facerec
from facerec.api import Dataset
from facerec.data.grid import save_grid
from facerec.data.transforms import Compose, RandomErasing, RandomHorizontalFlip
from facerec.engine import seed_everything, train_classifier
from facerec.engine.distributed import is_main_process
from facerec.inference import embed_tensor
from facerec.recipes import (
    NoParams,
    PipelineConfig,
    RunDir,
    build_backbone,
    build_dataset,
    build_head,
    build_protocols,
    evaluate_protocols,
    knob,
    recipe,
    save_backbone,
    train_config,
    write_summary,
)

#: FR training per preset (quick: CPU minutes; paper: SOTA-FR's HSFace10K config, 26 epochs, /10 at 12/20/24).
FR_TRAIN = {
    "quick": {
        "steps": 100,
        "batch_size": 64,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_steps": 10,
        "grad_clip": 5.0,
        "log_every": 10,
    },
    "paper": {
        "epochs": 26,
        "batch_size": 512,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": (12 / 26, 20 / 26, 24 / 26),
        "grad_clip": 5.0,
        "amp": "fp16",
        "log_every": 20,
    },
}
#: Quick-preset backbone size (the user's --param backbone.* wins): 32x32 faces, narrow trunk.
QUICK_BACKBONE = {"image_size": 32, "width": 8}
#: Quick-preset data and evaluation sizes (the user's --param dataset.* / protocol.* win).
QUICK_DATA = {"num_ids": 64, "per_id": 8}
QUICK_PROTOCOL = {"pairs_per_fold": 100}


@attrs.frozen
class Vec2FaceParams:
    """``--param recipe.*`` of the Vec2Face demo: the generator's training (paper: vec2face.py's base
    config, batch 128, lr 4e-5 x 128 / 112) and the FR model's augmentation."""

    gen_steps: int = knob(100, paper=100_000, low=1, help="generator training steps")
    gen_config: str = knob("tiny", paper="base", help="generator size (a Vec2Face config name)")
    gen_batch: int = knob(32, paper=128, low=1, help="generator batch size")
    gen_lr: float = knob(4e-3, paper=4e-5 * 128 / 112, low=0, help="generator learning rate")
    disc_start: int | None = knob(None, low=0, help="step the discriminator starts at (default: the generator's)")
    random_erasing: bool = knob(True, help="HSFace's flip + random erasing (false: flip only)")


def hsface_augment() -> Compose:
    # SOTA-FR applies RandomErasing after Normalize(0.5, 0.5), so its 0 fill is mid-grey in [0, 1].
    return Compose([RandomHorizontalFlip(), RandomErasing(value=0.5)])


class FeatureImages(Dataset):
    """Images with their identity features (what Vec2Face trains on), batched in memory."""

    def __init__(self, images: torch.Tensor, features: torch.Tensor, labels: torch.Tensor):
        self.images, self.features, self._labels = images, features, labels.long()
        self.num_classes = int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "feature": self.features[i], "label": int(self._labels[i])}

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return {"image": self.images[idx], "feature": self.features[idx], "label": self._labels[idx]}


def _all_images(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset)
    parts = [dataset.batch(range(i, min(i + 256, n))) for i in range(0, n, 256)]
    return torch.cat([p["image"].float() for p in parts]), torch.cat([torch.as_tensor(p["label"]) for p in parts])


def _train_fr(
    config: PipelineConfig, run: RunDir, data: Any, protocols: dict, stage: str, backbone_over: dict, augment: Any
) -> tuple[dict[str, Any], Any]:
    seed_everything(config.seed)
    backbone = build_backbone(config, **backbone_over)
    name = config.head or "arcface"
    # HSFace: ArcFace s=64, m=0.5. The quick preset softens it (s=32, m=0.2): with 100 CPU steps on 64
    # identities the full margin stays at chance level, the soft one learns (measured: 0.59 vs 0.70).
    margin = ({"s": 32.0, "m": 0.2} if config.quick else {"s": 64.0, "m": 0.5}) if name == "arcface" else {}
    head = build_head(config, backbone.embedding_size, int(data.num_classes), name=name, **margin)
    tcfg = train_config(config, FR_TRAIN[config.preset])
    resume = config.resume and run.checkpoint(stage).is_file()
    result = train_classifier(
        backbone,
        head,
        data,
        tcfg,
        run_dir=run.path,
        name=stage,
        augment=augment,
        resume=run.checkpoint(stage) if resume else None,
    )
    result.update(evaluate_protocols(protocols, backbone, device=config.device, run=run, tag=f"{stage}-"))
    save_backbone(run, backbone, f"backbone-{stage}.safetensors")
    return result, backbone


@recipe(params=Vec2FaceParams)
def vec2face_recipe(config: PipelineConfig, run: RunDir, knobs: Vec2FaceParams) -> dict[str, Any]:
    """Train FR on real data, train Vec2Face on its images+features, sample new identities (PCA-Gaussian of
    the centres), train FR on the generated set of the same size, compare on the protocols."""
    over = QUICK_BACKBONE if config.quick else {}
    seed_everything(config.seed)
    probe = build_backbone(config, **over)
    dataset = build_dataset(config, probe, **(QUICK_DATA if config.quick else {}))
    protocols = build_protocols(config, probe, **(QUICK_PROTOCOL if config.quick else {}))
    augment = hsface_augment() if knobs.random_erasing else "flip"
    metrics: dict[str, Any] = {}
    # 1. FR on the real set: the baseline, and the identity model Vec2Face learns to invert.
    real, fr = _train_fr(config, run, dataset, protocols, "real", over, augment)
    metrics["real"] = real
    images, labels = _all_images(dataset)
    fr.eval()
    feats = embed_tensor(fr, images, device=config.device).clone()  # out of inference mode: trained on
    # 2. Vec2Face on (image, feature) pairs, with the trained FR model as the identity loss.
    # build_generator's first argument is named ``config`` too: create with the merged params directly.
    gen = facerec.create(
        "generator", config.generator, **{"config": knobs.gen_config, **config.kind_params("generator")}
    ).to(config.device)
    gen.set_estimators(identity=fr)
    fit = gen.fit(
        FeatureImages(images, feats, labels),
        steps=int(knobs.gen_steps),
        batch_size=int(knobs.gen_batch),
        device=config.device,
        seed=config.seed,
        progress=True,
        lr=float(knobs.gen_lr),
        warmup_steps=min(10, int(knobs.gen_steps) // 10),
        disc_start=knobs.disc_start,
        run_dir=str(run.path),
    )
    metrics["generator"] = fit
    # 3. New identities from the centres' PCA-Gaussian, same size as the real set.
    centres = torch.zeros(int(labels.max()) + 1, feats.shape[1]).index_add_(0, labels, feats)
    centres /= torch.bincount(labels).clamp(min=1).unsqueeze(1).float()
    gen.fit_identity_sampler(centres)
    num_ids = int(labels.max()) + 1
    per_id = max(1, round(len(labels) / num_ids))
    generated = gen.as_dataset(num_ids, per_id, seed=config.seed, device=config.device)
    recon = gen.decode(feats[:8].to(config.device)).cpu()
    if is_main_process():  # under torchrun rank 0 alone writes pictures
        save_grid(
            generated.data[: 8 * min(num_ids, 4)].float(),
            run.file("pictures/vec2face-generated.png"),
            labels=generated.labels[: 8 * min(num_ids, 4)],
            ncol=8,
        )
        save_grid(
            torch.cat([images[:8], (recon.float() + 1) / 2]).clamp(0, 1),
            run.file("pictures/vec2face-reconstructions.png"),
            ncol=8,
        )
    # 4. FR on the generated set.
    synth, _ = _train_fr(config, run, generated, protocols, "generated", over, augment)
    metrics["generated"] = synth
    rows = []
    for stage, data, res in (("real", dataset, real), ("generated", generated, synth)):
        rows.append(
            {
                "training data": stage,
                "samples": len(data),
                "classes": int(data.num_classes),
                **{k: v for k, v in res.items() if "/" in k and not k.startswith("train/")},
            }
        )
    for key, value in rows[0].items():
        if "/" in key and isinstance(value, float) and isinstance(rows[1].get(key), float):
            metrics[f"real/{key}"] = value
            metrics[f"generated/{key}"] = rows[1][key]
    write_summary(
        run,
        config,
        {k: v for k, v in metrics.items() if not isinstance(v, dict)},
        tables={"FR trained on real vs Vec2Face-generated data (same size)": rows},
        text="Generated faces: pictures/vec2face-generated.png; reconstructions (top: real, "
        "bottom: decoded from its feature): pictures/vec2face-reconstructions.png\n\n"
        f"Generator loss terms left out: {fit.get('losses_off', 'none')}",
    )
    return metrics


@recipe()
def hsface_recipe(config: PipelineConfig, run: RunDir, params: NoParams) -> dict[str, Any]:
    """The HSFace FR recipe (SOTA-FR): ArcFace s=64 m=0.5, SGD 0.1/0.9/5e-4, flip + random erasing."""
    seed_everything(config.seed)
    over = QUICK_BACKBONE if config.quick else {}
    probe = build_backbone(config, **over)
    dataset = build_dataset(config, probe, **(QUICK_DATA if config.quick else {}))
    protocols = build_protocols(config, probe, **(QUICK_PROTOCOL if config.quick else {}))
    result, _ = _train_fr(config, run, dataset, protocols, "train", over, hsface_augment())
    write_summary(run, config, {k: v for k, v in result.items() if isinstance(v, (int, float))})
    return result
