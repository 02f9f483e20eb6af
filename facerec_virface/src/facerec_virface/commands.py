"""`facerun virface convert`: split an original VirFace checkpoint into facerec safetensors files."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def virface() -> None:
    """VirFace tools: convert the repository's checkpoints (backbone, head, optional generator)."""


@virface.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--arch",
    default="resnet50",
    show_default=True,
    help="Backbone of the checkpoint: resnet18/34/50/101/152 (or a registered backbone name).",
)
@click.option("--embedding-size", "--feat-len", "embedding_size", default=512, show_default=True, type=int)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for backbone.safetensors, head.safetensors and generator.safetensors.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="backbone.KEY=VALUE",
    help="Other backbone parameter for non-standard nets, e.g. backbone.width=32 (repeatable).",
)
def convert(checkpoint: str, arch: str, embedding_size: int, out: str, params: tuple[str, ...]) -> None:
    """Strictly load every part of a VirFace `_epoch_N.pytorch` (with or without `module.`) and save each
    as safetensors (the backbone file works with `facerun eval --weights`)."""
    import facerec
    from facerec.weights import save_weights

    from .checkpoints import load_parts, read_parts

    name = arch if arch.startswith("virface-") or "-" in arch else f"virface-{arch}"
    parts = read_parts(checkpoint)
    if "head" not in parts or "weight" not in parts["head"]:
        raise facerec.FacerecError(f"{checkpoint}: no head weight in the checkpoint")
    num_ids = int(parts["head"]["weight"].shape[0])
    from facerec.recipes import parse_params

    parsed = parse_params(params)
    if any(v for k, v in parsed.items() if k != "backbone"):
        raise facerec.FacerecError("--param: convert takes backbone.KEY=VALUE parameters only")
    extra = parsed["backbone"]
    backbone = facerec.create("backbone", name, embedding_size=embedding_size, **extra)
    head = facerec.create("head", "virinstance", embedding_size=embedding_size, num_classes=num_ids)
    generator = facerec.create("generator", "virface", embedding_size=embedding_size) if "generator" in parts else None
    loaded = load_parts(checkpoint, backbone=backbone, head=head, generator=generator)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, module, arch_name in (
        ("backbone", backbone, name),
        ("head", head, "virinstance"),
        ("generator", generator, "virface"),
    ):
        if part in loaded:
            meta = {
                "arch": arch_name,
                "kind": part,
                "source": Path(checkpoint).name,
                "params": json.dumps(
                    {"embedding_size": embedding_size, **(extra if part == "backbone" else {})}
                    if part != "head"
                    else {"embedding_size": embedding_size, "num_classes": num_ids}
                ),
            }
            written[part] = str(save_weights(module, folder / f"{part}.safetensors", meta))
    click.echo(f"{Path(checkpoint).name}: {', '.join(sorted(loaded))} ({num_ids} classes) -> {folder}")
    for part, path in written.items():
        click.echo(f"  {part}: {path}")
