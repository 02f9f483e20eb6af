"""``facerun dvg ...``: the DVG-Face original scripts' jobs on their own.

* ``train-generator``: ``train_generator.py``: the dual generator on a NIR-VIS list, with a frozen face model
  (the released LightCNN-29 v2) and the released identity sampler (frozen) or one trained here; resumable.
* ``convert``: the original's epoch checkpoints (``encoder_nir/encoder_vis/decoder_epoch_E.pth.tar`` +
  ``dec_epoch_45.pth.tar``) and the attribute codes of real pairs of the training list (what
  ``gen_samples.py`` combines new identities with) into one self-describing generator file.

Both write a generator file that ``facerun generate --generator dvg --weights FILE`` uses as it is (the
file stores its build parameters).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

GENERATORS = ("dvg", "dvg-neurips")


def _pairs(items: tuple[str, ...], option: str) -> dict[str, Any]:
    from facerec.recipes import parse_assignments

    return parse_assignments(items, option)


def _nir_vis_list(
    train_list: str, img_root: str | None, layout: str, modality_rule: str | None, image_size: int
) -> Any:
    """The list as the original reads it (modality from NIR/VIS in the path), decoded once when it fits."""
    from facerec.recipes import CachedDataset

    from .nirvis import NirVisList

    data = NirVisList(train_list, root=img_root, layout=layout, modality_rule=modality_rule, image_size=image_size)
    fits = len(data) * 3 * image_size**2 <= 1 << 30  # as 8-bit images
    return CachedDataset(data, storage="uint8", fill=True) if fits else data


@click.group()
def dvg() -> None:
    """DVG-Face tools: train the dual generator alone (train_generator.py), convert the original's checkpoints."""


# ----------------------------------------------------------------------------------------- train-generator
@dvg.command("train-generator")
@click.option(
    "--img-root",
    "--img_root",
    "img_root",
    type=click.Path(exists=True, file_okay=False),
    help="Image root of the list (the original's --img_root; default: the list's folder).",
)
@click.option(
    "--train-list",
    "--train_list",
    "train_list",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="NIR-VIS list `path label` (the original's --train_list); modality from NIR/VIS in the path.",
)
@click.option(
    "--layout",
    type=click.Choice(["dvgface", "dvg"]),
    default="dvgface",
    show_default=True,
    help="dvgface: `path label`; dvg: `path label domain` (0 = NIR, 1 = VIS).",
)
@click.option("--modality-rule", help="Another modality rule: a column index or a regex (see nir-vis-list).")
@click.option("--generator", "arch", type=click.Choice(GENERATORS), default="dvg", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option(
    "--face-weights",
    help="Face model weights: LightCNN_29Layers_V2_checkpoint.pth.tar (the original's "
    "pre_train/), a facerec file or a card.",
)
@click.option("--face-backbone", default="lightcnn29", show_default=True, help="Face model (any registered backbone).")
@click.option("--face-param", "face_params", multiple=True, metavar="KEY=VALUE", help="Face model parameter.")
@click.option(
    "--identity-sampler",
    type=click.Path(exists=True, dir_okay=False),
    help="The released sampler dec_epoch_45.pth.tar (the original's pre_train/), kept frozen.",
)
@click.option(
    "--sampler-steps",
    default=2000,
    show_default=True,
    type=click.IntRange(1),
    help="Without --identity-sampler: train one (a VAE over the face model's features of the list).",
)
@click.option("--epochs", type=float, help="Epochs over the list's paired images (the original: 5).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (instead of --epochs).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Adam lr (betas 0.5, 0.999).")
@click.option("--image-size", default=128, show_default=True, type=int, help="Generator size (power of two <= 128).")
@click.option("--width", default=1.0, show_default=True, type=float, help="Channel multiplier (1: the released nets).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Other generator parameter.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--checkpoint-every",
    default=500,
    show_default=True,
    type=click.IntRange(0),
    help="Steps between checkpoints (always at the end).",
)
@click.option("--stop-at", type=click.IntRange(1), help="Stop at this step as if interrupted (continue with --resume).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
def train_generator(
    img_root,
    train_list,
    layout,
    modality_rule,
    arch,
    out,
    face_weights,
    face_backbone,
    face_params,
    identity_sampler,
    sampler_steps,
    epochs,
    steps,
    batch_size,
    lr,
    image_size,
    width,
    params,
    seed,
    device,
    checkpoint_every,
    stop_at,
    resume,
    overwrite,
) -> None:
    """Train the dual generator on a NIR-VIS list (train_generator.py); writes OUT/generator.safetensors."""
    import facerec
    from facerec.params import check_device
    from facerec.engine import seed_everything
    from facerec.errors import ParameterError
    from facerec.outputs import claim_run_dir
    from facerec.recipes import RunDir
    from facerec.weights import resolve, save_weights

    from .loop_checkpoint import LoopCheckpoint
    from .pairs import PairSampler, dataset_modality
    from .resume import generator_metadata, loop_finished

    if steps is not None and epochs is not None:
        raise ParameterError("give --steps or --epochs, not both")
    if identity_sampler and arch != "dvg":
        raise ParameterError(f"--identity-sampler: generator {arch!r} has no identity sampler (DVG-Face's 'dvg' has)")
    if resume and not (Path(out) / "checkpoints").is_dir():
        raise ParameterError(f"--resume: {out} holds no earlier run (no checkpoints/)")
    device = check_device(device)
    run = RunDir(claim_run_dir(out, resume=resume, overwrite=overwrite))
    seed_everything(seed)  # every init from --seed: a resumed run continues the same run
    face = facerec.create("backbone", face_backbone, **_pairs(face_params, "--face-param"))
    if face_weights:
        facerec.load_weights(face, resolve(face_weights))
    else:
        from facerec.reports import random_weights_warning

        click.echo(
            random_weights_warning("facerun dvg train-generator", f"the face model {face_backbone!r}").replace(
                "without --weights", "without --face-weights"
            ),
            err=True,
        )
    ctor: dict[str, Any] = {"image_size": image_size, "width": width, "lr": lr}
    if arch == "dvg":
        ctor.update(identity_dim=face.embedding_size, identity_sampler_weights=identity_sampler)
    gen = facerec.create("generator", arch, **{**ctor, **_pairs(params, "--param")})
    gen.set_face_model(face.to(device))
    data = _nir_vis_list(train_list, img_root, layout, modality_rule, int(gen.image_size))
    anchors = len(PairSampler(data.labels, dataset_modality(data)).anchors)
    total = steps or max(1, math.ceil((5.0 if epochs is None else epochs) * max(1, anchors // batch_size)))
    every = checkpoint_every
    ckpt = run.path / "checkpoints"
    who, option = "facerun dvg train-generator", "--stop-at"
    stats: dict[str, Any] = {}
    if arch == "dvg" and not identity_sampler:
        from facerec.inference import embed_batches

        chunks = (data.batch(list(range(s, min(s + 128, len(data)))))["image"] for s in range(0, len(data), 128))
        feats = embed_batches(face, chunks, device=device)
        s = gen.fit_identity_sampler(
            feats,
            steps=sampler_steps,
            device=device,
            seed=seed,
            progress=True,
            checkpoint=LoopCheckpoint(ckpt / "identity-sampler-last.safetensors", every, stop_at),
        )
        loop_finished("identity-sampler", s.pop("sampler_step"), sampler_steps, option, who)
        stats.update(s)
    log: list = []
    meta = generator_metadata(arch, gen)
    result = gen.fit(
        data,
        steps=total,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=True,
        log=log,
        checkpoint=LoopCheckpoint(ckpt / "generator-last.safetensors", every, stop_at, meta),
    )
    loop_finished("generator", result.pop("step"), total, option, who)
    stats.update(result)
    path = save_weights(gen, run.file("generator.safetensors"), {**meta, "source": Path(train_list).name})
    run.write_text("generator_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    settings = {
        "train_list": str(Path(train_list).resolve()),
        "images": len(data),
        "paired_images": anchors,
        "generator": arch,
        "params": meta["params"],
        "steps": total,
        "batch_size": batch_size,
        "lr": lr,
        "face_backbone": face_backbone,
        "face_weights": face_weights,
        "identity_sampler": identity_sampler or f"trained here ({sampler_steps} steps)",
    }
    run.write_json("metrics.json", {**stats, "settings": settings})
    click.echo(
        f"wrote {path} ({total} steps of {batch_size} pairs); generate from it: facerun generate "
        f"--generator {arch} --weights {path} --ids N --per-id 2 --format folder --out gen_images"
    )


# ----------------------------------------------------------------------------------------- convert
@dvg.command("convert")
@click.option(
    "--encoder-nir", required=True, type=click.Path(exists=True, dir_okay=False), help="encoder_nir_epoch_E.pth.tar"
)
@click.option(
    "--encoder-vis", required=True, type=click.Path(exists=True, dir_okay=False), help="encoder_vis_epoch_E.pth.tar"
)
@click.option("--decoder", required=True, type=click.Path(exists=True, dir_okay=False), help="decoder_epoch_E.pth.tar")
@click.option(
    "--identity-sampler",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="dec_epoch_45.pth.tar (the released sampler)",
)
@click.option(
    "--img-root",
    "--img_root",
    "img_root",
    type=click.Path(exists=True, file_okay=False),
    help="Image root of the training list.",
)
@click.option(
    "--train-list",
    "--train_list",
    "train_list",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The NIR-VIS training list: sampling takes the attributes of its real pairs, as gen_samples.py.",
)
@click.option("--layout", type=click.Choice(["dvgface", "dvg"]), default="dvgface", show_default=True)
@click.option("--modality-rule", help="Another modality rule: a column index or a regex.")
@click.option("--image-size", default=128, show_default=True, type=int)
@click.option("--width", default=1.0, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int, help="Which real pairs give the attribute codes.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="generator.safetensors to write.")
def convert(
    encoder_nir,
    encoder_vis,
    decoder,
    identity_sampler,
    img_root,
    train_list,
    layout,
    modality_rule,
    image_size,
    width,
    seed,
    out,
) -> None:
    """The original's epoch checkpoints + the attribute codes of the list's real pairs -> one generator file."""
    import facerec
    from facerec.errors import WeightsError
    from facerec.weights import load_weights, save_weights

    from .resume import generator_metadata

    if not str(out).endswith(".safetensors"):
        raise WeightsError(f"--out {out} must end in .safetensors")
    gen = facerec.create("generator", "dvg", image_size=image_size, width=width)
    gen.load_original(
        encoder_nir=encoder_nir, encoder_vis=encoder_vis, decoder=decoder, identity_sampler=identity_sampler
    )
    data = _nir_vis_list(train_list, img_root, layout, modality_rule, int(gen.image_size))
    gen.store_attributes(data, seed=seed)
    sources = {
        "encoder_nir": Path(encoder_nir).name,
        "encoder_vis": Path(encoder_vis).name,
        "decoder": Path(decoder).name,
        "identity_sampler": Path(identity_sampler).name,
        "attributes_from": Path(train_list).name,
    }
    path = save_weights(gen, out, {**generator_metadata("dvg", gen), "source": sources})
    check = facerec.create("generator", "dvg", **gen.build_params())
    load_weights(check, path)  # the written file rebuilds from its own metadata and loads strictly
    click.echo(
        f"wrote {path}: DVG-Face generator {gen.build_params()} with {int(gen.attributes_count)} attribute "
        f"codes from {Path(train_list).name}; generate from it: facerun generate --generator dvg "
        f"--weights {path} --ids N --per-id 2 --out gen_images.lmdb"
    )
