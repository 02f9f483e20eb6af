"""`facerun vec2face prepare | train`: the original's `scripts/prepare_training_set.py` (+ the subset mask of
`scripts/small_portion_training_mask.py`) and `vec2face.py` (generator training) as commands."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click

#: The original's learning rate: ``lr = blr * effective batch / 112`` (its divisor is 112, not 256).
LR_DIVISOR = 112


@click.group()
def vec2face() -> None:
    """Vec2Face tools: build the training LMDB (images + identity features + subset mask), train the generator."""


# ------------------------------------------------------------------------------------------ prepare
def _features(
    ds: Any,
    keys: list[str],
    features: str | None,
    identity_weights: str | None,
    backbone: str,
    batch_size: int,
    device: str,
) -> Any:
    """One identity feature per image: read from a `facerun extract` file, or computed (raw, un-normalised)."""
    import torch

    from facerec.errors import DataError, ParameterError

    if (features is None) == (identity_weights is None):
        raise ParameterError(
            "give exactly one of --features (a `facerun extract` file) or --identity-weights "
            "(the identity model, e.g. arcface-r100-glint360k.pth)"
        )
    if features is not None:
        from facerec.protocols.common import load_features

        table = load_features(features)
        rows = [table.index.get(k, table.stems.get(os.path.splitext(k)[0])) for k in keys]
        missing = [k for k, r in zip(keys, rows) if r is None]
        if missing:
            raise DataError(f"--features {features}: no feature for {len(missing)} images, e.g. {missing[0]!r}")
        return table.embeddings[torch.tensor(rows)].float()
    import facerec
    from facerec.data.sources import image_batches
    from facerec.protocols.common import embed_images, image_size_for

    from .generator import _named_architecture

    # a facerec file that names its architecture (arch/params metadata) builds that; else --backbone
    model = _named_architecture(identity_weights) or facerec.create("backbone", backbone)
    facerec.load_weights(model, identity_weights)
    model.eval().to(device)
    ds.image_size = image_size_for(model, None)
    return embed_images(
        model, image_batches(ds, batch_size), len(ds), device=device, progress=True, desc="identity features"
    )


def write_training_lmdb(out: Path, raw: Any, features: Any, labels: Any, num_records: int) -> None:
    """The original's training LMDB: one file, ``msgpack((image file bytes, .npy feature bytes, label))`` under
    ``b"0".."N-1"``, plus ``__keys__``, ``__len__`` and ``__classnum__``; ``raw(i)`` gives record i's image
    file bytes (stored as they are). Written to ``OUT.partial`` and renamed when complete."""
    import io

    import lmdb
    import msgpack
    import numpy as np

    tmp = out.with_name(out.name + ".partial")
    for p in (tmp, Path(str(tmp) + "-lock")):
        if p.exists():
            p.unlink()
    labels = [int(v) for v in labels]
    env = lmdb.open(str(tmp), subdir=False, map_size=max(1 << 24, 4 * num_records * (64 << 10)), lock=False)
    try:
        txn = env.begin(write=True)
        for i in range(num_records):
            buf = io.BytesIO()
            np.save(buf, features[i].numpy().astype(np.float32), allow_pickle=False)
            txn.put(str(i).encode("ascii"), msgpack.packb((raw(i), buf.getvalue(), labels[i]), use_bin_type=True))
            if (i + 1) % 10_000 == 0:
                txn.commit()
                txn = env.begin(write=True)
        keys = [str(i).encode("ascii") for i in range(num_records)]
        txn.put(b"__keys__", msgpack.packb(keys, use_bin_type=True))
        txn.put(b"__len__", msgpack.packb(num_records))
        txn.put(b"__classnum__", msgpack.packb(max(labels) + 1 if labels else 0))
        txn.commit()
        env.sync()
    finally:
        env.close()
    os.replace(tmp, out)


def subset_mask(relpaths: list[str], num_ids: int, seed: int = 0) -> Any:
    """The original's ``small_portion_training_mask.py``: the record positions of every image of ``num_ids``
    identities (parent folders) drawn with ``np.random.seed(seed)`` without replacement."""
    import numpy as np

    from facerec.errors import ParameterError

    by_id: dict[str, list[int]] = {}
    for i, rel in enumerate(relpaths):
        by_id.setdefault(rel.replace("\\", "/").split("/")[-2] if "/" in rel else "", []).append(i)
    if num_ids > len(by_id):
        raise ParameterError(f"--mask-ids {num_ids}: the data has {len(by_id)} identities")
    np.random.seed(seed)
    chosen = np.random.choice(list(by_id), num_ids, replace=False)
    return np.array([i for k in chosen for i in by_id[k]], dtype=np.int64)


@vec2face.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Aligned 112x112 faces: a folder with one sub-folder per identity, or an image list (path label).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output training LMDB (one file).")
@click.option(
    "--features",
    type=click.Path(dir_okay=False),
    help="Identity features from `facerun extract` (keys = the images' relative paths).",
)
@click.option(
    "--identity-weights",
    type=click.Path(dir_okay=False),
    help="Compute the features with this identity model (e.g. arcface-r100-glint360k.pth).",
)
@click.option(
    "--backbone",
    default="iresnet100",
    show_default=True,
    help="Architecture of --identity-weights (unless the file names its own, as facerec files can).",
)
@click.option("--mask-ids", type=click.IntRange(1), help="Also write a subset mask of this many identities.")
@click.option("--mask-out", type=click.Path(dir_okay=False), help="Where the mask goes (default: OUT.mask.npy).")
@click.option("--mask-seed", default=0, show_default=True, type=int, help="The mask's numpy seed (the original: 0).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--device", default="cpu", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def prepare(
    data, out, features, identity_weights, backbone, mask_ids, mask_out, mask_seed, batch_size, device, overwrite
) -> None:
    """Build the generator's training LMDB from face images and their identity features (prepare_training_set.py)."""
    import numpy as np

    from facerec.data.sources import open_with_keys
    from facerec.errors import DataError
    from facerec.params import check_device

    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise DataError(f"output {out_path} already exists (pass --overwrite)")
    if not out_path.parent.is_dir():
        raise DataError(f"output folder {out_path.parent} does not exist")
    device = check_device(device)
    ds, keys = open_with_keys(data, 112, {})
    if getattr(ds, "unlabelled", False):
        raise DataError(
            f"--data {data}: a flat folder has no identities; put each identity's images in its own "
            "sub-folder (the original labels images by parent folder)"
        )
    feats = _features(ds, keys, features, identity_weights, backbone, batch_size, device)
    write_training_lmdb(out_path, ds.read_raw, feats, ds.labels.tolist(), len(ds))
    click.echo(
        f"wrote {len(ds)} images of {int(ds.labels.max()) + 1} identities with {feats.shape[1]}-d features "
        f"to {out_path}"
    )
    if mask_ids:
        mask = subset_mask(keys, mask_ids, mask_seed)
        target = Path(mask_out) if mask_out else out_path.with_name(out_path.name + ".mask.npy")
        tmp = target.with_name(target.name + ".tmp.npy")
        np.save(tmp, mask)
        os.replace(tmp, target)
        click.echo(f"wrote a mask of {len(mask)} records ({mask_ids} identities) to {target}")


# -------------------------------------------------------------------------------------------- train
@vec2face.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Training LMDB (`vec2face prepare`).")
@click.option("--mask", type=click.Path(dir_okay=False), help="Subset mask .npy (record indices).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option(
    "--config",
    "net",
    default="base",
    show_default=True,
    help="base (released, 112 px), large, huge, or tiny (32 px, CPU).",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Start from these generator weights.")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (or --epochs).")
@click.option("--epochs", type=float, help="Epochs over the (masked) data.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Global batch.")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1), help="The original's --accum_iter.")
@click.option("--blr", default=4e-5, show_default=True, type=float, help="Base lr: lr = blr * batch / 112.")
@click.option("--lr", type=float, help="Absolute learning rate (instead of --blr).")
@click.option("--min-lr", default=0.0, show_default=True, type=float)
@click.option("--warmup-steps", type=click.IntRange(0), help="Linear warm-up steps (or --warmup-epochs).")
@click.option("--warmup-epochs", type=float, help="Warm-up in epochs (the original's unit).")
@click.option("--disc-start", type=click.IntRange(0), help="Step at which the GAN term starts (default: never).")
@click.option("--disc-start-epoch", type=float, help="The same in epochs (the original's unit).")
@click.option("--grad-clip", default=2.0, show_default=True, type=float)
@click.option(
    "--amp",
    type=click.Choice(["off", "fp16", "bf16"]),
    default="off",
    show_default=True,
    help="Mixed precision (the original: fp16 unless --use_amp).",
)
@click.option("--mask-ratio-min", default=0.5, show_default=True, type=float)
@click.option("--mask-ratio-max", default=1.0, show_default=True, type=float)
@click.option("--mask-ratio-mu", default=0.75, show_default=True, type=float)
@click.option("--mask-ratio-std", default=0.25, show_default=True, type=float)
@click.option(
    "--identity-weights",
    type=click.Path(dir_okay=False),
    help="Identity model of the ID loss (arcface-r100-glint360k.pth); without it the loss is off.",
)
@click.option("--lpips-vgg", type=click.Path(dir_okay=False), help="torchvision VGG16 weights for LPIPS.")
@click.option("--lpips-lin", type=click.Path(dir_okay=False), help="LPIPS's vgg.pth (the lin layers).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0))
@click.option("--checkpoint-every", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly.")
def train(
    data,
    mask,
    out,
    net,
    weights,
    steps,
    epochs,
    batch_size,
    grad_accum,
    blr,
    lr,
    min_lr,
    warmup_steps,
    warmup_epochs,
    disc_start,
    disc_start_epoch,
    grad_clip,
    amp,
    mask_ratio_min,
    mask_ratio_max,
    mask_ratio_mu,
    mask_ratio_std,
    identity_weights,
    lpips_vgg,
    lpips_lin,
    seed,
    device,
    workers,
    checkpoint_every,
    resume,
) -> None:
    """Train the Vec2Face generator on a training LMDB (vec2face.py); writes OUT/generator.safetensors."""
    import facerec
    from facerec.data.formats import LMDBDataset
    from facerec.engine.distributed import env_world_size
    from facerec.errors import DataError, ParameterError
    from facerec.params import check_device
    from facerec.recipes import RunDir

    from .vit import MaskConfig

    if (steps is None) == (epochs is None):
        raise ParameterError("give exactly one of --steps or --epochs")
    if warmup_steps is not None and warmup_epochs is not None:
        raise ParameterError("give --warmup-steps or --warmup-epochs, not both")
    if disc_start is not None and disc_start_epoch is not None:
        raise ParameterError("give --disc-start or --disc-start-epoch, not both")
    if resume and not (Path(out) / "checkpoints").is_dir():
        raise ParameterError(f"--resume: {out} holds no earlier run (no checkpoints/)")
    device = check_device(device)
    gen = facerec.create("generator", "vec2face", config=net, identity_weights=identity_weights)
    if weights:
        facerec.load_weights(gen, weights)
    dataset = LMDBDataset(data, mask=mask, image_size=gen.config.img_size)
    if not dataset.has_features:
        raise DataError(f"--data {data}: records carry no identity features (build it with `facerun vec2face prepare`)")
    per_epoch = len(dataset) / (batch_size * grad_accum)

    def in_steps(value: float | None) -> int | None:
        return None if value is None else int(math.ceil(value * per_epoch))

    steps = steps or in_steps(epochs)
    warm = warmup_steps if warmup_steps is not None else (in_steps(warmup_epochs) or 0)
    start = disc_start if disc_start is not None else in_steps(disc_start_epoch)
    rate = lr if lr is not None else blr * batch_size * grad_accum * env_world_size() / LR_DIVISOR
    run = RunDir(out)
    result = gen.fit(
        dataset,
        steps=steps,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=True,
        lr=rate,
        warmup_steps=warm,
        disc_start=start,
        grad_clip=grad_clip,
        amp=amp,
        min_lr=min_lr,
        grad_accum=grad_accum,
        num_workers=workers,
        lpips_vgg_weights=lpips_vgg,
        lpips_lin_weights=lpips_lin,
        run_dir=str(run.path),
        resume=resume,
        checkpoint_every=checkpoint_every,
        mask=MaskConfig(mask_ratio_min, mask_ratio_max, mask_ratio_mu, mask_ratio_std),
    )
    meta = {"format": "pt", "arch": "vec2face", "params": json.dumps({"config": net})}
    run.save_safetensors("generator.safetensors", gen.state_dict(), meta)
    settings = {
        "data": str(Path(data).resolve()),
        "mask": mask,
        "images": len(dataset),
        "config": net,
        "steps": steps,
        "batch_size": batch_size,
        "lr": rate,
        "warmup_steps": warm,
        "disc_start": start,
        "amp": amp,
    }
    run.write_json("metrics.json", {**result, "settings": settings})
    run.write_markdown(
        "summary.md",
        f"Vec2Face generator training {run.path.name}",
        {"Settings": [settings], "Final": [{k: v for k, v in result.items() if k != "losses_off"}]},
        f"Generator loss terms left out: {result['losses_off']}\n\n"
        f"Generate from it: facerun generate --generator vec2face --param config={net} "
        f"--weights {run.path / 'generator.safetensors'} --ids N --per-id K --out data.lmdb",
    )
    from facerec.engine.distributed import is_main_process

    if is_main_process():
        click.echo(f"losses left out: {result['losses_off']}")
        click.echo(f"wrote {run.path / 'generator.safetensors'} ({result.get('step', steps):.0f} steps)")
