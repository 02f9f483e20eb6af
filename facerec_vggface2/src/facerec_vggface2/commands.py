"""VGGFace2 extract / test / train: the three modes of the original demo.py, as `facerun vggface2 ...`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

ARCH_HELP = "resnet50_ft, senet50_ft, resnet50_scratch, senet50_scratch (or vggface2-resnet50/-senet50)."


def _common(f):
    f = click.option("--arch", "--arch-type", "arch", default="resnet50_ft", show_default=True, help=ARCH_HELP)(f)
    f = click.option(
        "--weights",
        "--weight-file",
        "weights",
        default=None,
        help="Released *_weight.pkl, resume .pth.tar, facerec .safetensors, or a weight-card name.",
    )(f)
    f = click.option(
        "--root",
        "--dataset-dir",
        "root",
        required=True,
        type=click.Path(file_okay=False),
        help="Dataset directory (the folder holding train/ and test/, or the split itself).",
    )(f)
    f = click.option(
        "--meta",
        "--meta-file",
        "meta",
        default=None,
        type=click.Path(dir_okay=False),
        help="identity_meta.csv of VGGFace2.",
    )(f)
    f = click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))(f)
    f = click.option("--workers", "-j", default=0, show_default=True, type=click.IntRange(0))(f)
    f = click.option("--device", default="cpu", show_default=True)(f)
    f = click.option("--split", default=None, help="Prefix for list lines without one (default: guessed).")(f)
    return f


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


@click.group()
def vggface2() -> None:
    """VGGFace2 ResNet-50 / SE-ResNet-50: extract features, test top-1/top-5, train (classifier or full)."""


@vggface2.command()
@_common
@click.option(
    "--list",
    "list_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image list ([split/]class_id/file per line).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output features .safetensors.")
@click.option("--flip", is_flag=True, help="Average the features of the image and its mirror.")
@click.option(
    "--flipped",
    "--horizontal-flip",
    "flipped",
    is_flag=True,
    help="Features of the mirrored images only (the original's --horizontal_flip).",
)
@click.option("--l2", is_flag=True, help="L2-normalise each feature.")
def extract(arch, weights, root, meta, batch_size, workers, device, split, list_file, out, flip, flipped, l2) -> None:
    """Features of every image of a list in one .safetensors file (no meta CSV needed)."""
    from facerec.errors import ParameterError

    from .data import VGGFace2List
    from .runtime import build_model, extract_features, save_features

    if flip and flipped:
        raise ParameterError("give --flip (average with the mirror) or --flipped (the mirror alone), not both")
    mode = "average" if flip else "flipped" if flipped else "none"
    data = VGGFace2List(root, list_file, meta_file=meta, split=split)
    model = build_model(arch, weights, device)
    feats = extract_features(
        model, data, batch_size=batch_size, workers=workers, flip=mode, l2=l2, device=device, progress=True
    )
    path = save_features(out, feats, data, arch=arch, flip=mode, l2=l2)
    click.echo(f"wrote {feats.shape[0]} x {feats.shape[1]} features to {path}")


@vggface2.command()
@_common
@click.option(
    "--list",
    "list_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image list to classify ([split/]class_id/file per line).",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the metrics as JSON here.")
def test(arch, weights, root, meta, batch_size, workers, device, split, list_file, out) -> None:
    """Top-1/top-5 accuracy and loss over the training identities (needs identity_meta.csv)."""
    from facerec.errors import ParameterError

    from .data import VGGFace2List
    from .runtime import build_model, evaluate_topk

    if meta is None:
        raise ParameterError("test needs --meta identity_meta.csv (it maps class ids to classifier outputs)")
    data = VGGFace2List(root, list_file, meta_file=meta, split=split)
    model = build_model(arch, weights, device)
    result = evaluate_topk(model, data, batch_size=batch_size, workers=workers, device=device, progress=True)
    if result["images"]:
        click.echo(
            f"top1 {result['top1']:.4f}  top5 {result['top5']:.4f}  loss {result['loss']:.4f}  "
            f"({result['images']} images)"
        )
    else:
        click.echo("no image of a training identity in the list: top-1 / top-5 / loss undefined (null in --out)")
    if result["skipped_test_split_images"]:
        click.echo(
            f"skipped {result['skipped_test_split_images']} images of "
            f"{result['skipped_test_split_identities']} test-split identities (not among the "
            f"{result['classifier_classes']} classifier classes)"
        )
    if out:
        _write_json(Path(out), result)


@vggface2.command()
@_common
@click.option(
    "--list", "--train-list", "list_file", required=True, type=click.Path(dir_okay=False), help="Training image list."
)
@click.option("--val-list", default=None, type=click.Path(dir_okay=False), help="Validation list (top-1/top-5).")
@click.option(
    "--mode",
    type=click.Choice(["fc", "full"]),
    default="fc",
    show_default=True,
    help="fc: classifier only, as the original; full: the whole network.",
)
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=0.1, show_default=True, type=float, help="Classifier learning rate (bias: 2x).")
@click.option("--backbone-lr", default=0.01, show_default=True, type=float, help="Backbone lr (--mode full).")
@click.option("--seed", default=1337, show_default=True, type=int)
@click.option(
    "--checkpoint-every",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="Write OUT/checkpoint.safetensors every N steps (and always at the end); 0 = end only.",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its checkpoint (exactly; --steps may be raised)."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (deletes it first).")
def train(
    arch,
    weights,
    root,
    meta,
    batch_size,
    workers,
    device,
    split,
    list_file,
    val_list,
    mode,
    steps,
    lr,
    backbone_lr,
    seed,
    checkpoint_every,
    resume,
    out,
    overwrite,
) -> None:
    """Train the classifier (or the whole network) on a VGGFace2 list; writes model.safetensors + metrics."""
    from facerec.outputs import claim_run_dir
    from safetensors.torch import save_file

    from .data import VGGFace2List
    from .runtime import build_model, check_resumable, evaluate_topk, run_settings, train_classifier

    run = claim_run_dir(out, resume=resume, overwrite=overwrite)  # an earlier run is never replaced silently
    checkpoint = run / "checkpoint.safetensors"
    if resume and not checkpoint.is_file():
        from facerec.errors import ParameterError

        raise ParameterError(f"--resume: no checkpoint in {run} (run `facerun vggface2 train --out {run}` first)")
    data = VGGFace2List(root, list_file, meta_file=meta, split=split)
    if resume:  # before loading any weights: a mismatch is a quick one-line error
        check_resumable(
            checkpoint, run_settings(data, mode=mode, batch_size=batch_size, seed=seed, lr=lr, backbone_lr=backbone_lr)
        )
    val = VGGFace2List(root, val_list, meta_file=meta, split=split) if val_list else None
    model = build_model(arch, weights, device)
    log_path = run / "log.jsonl"
    earlier: list[str] = []
    if resume and log_path.is_file():  # keep the log of the steps the checkpoint holds
        from facerec.engine.checkpoint import read_metadata

        held = int(read_metadata(checkpoint)["step"])
        earlier = [
            line
            for line in log_path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= held
        ]
    with log_path.open("w") as log:
        log.writelines(line + "\n" for line in earlier)

        def write(rec: dict) -> None:
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if rec["step"] % 10 == 0 or rec["step"] == steps:
                click.echo(
                    f"step {rec['step']}/{steps}  loss {rec['loss']:.4f}  top1 {rec['top1']:.3f}  "
                    f"{rec['items_per_s']:.1f} img/s"
                )

        metrics = train_classifier(
            model,
            data,
            mode=mode,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            backbone_lr=backbone_lr,
            workers=workers,
            device=device,
            seed=seed,
            log=write,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )
    if resume:
        click.echo(f"resumed at step {metrics['resumed_from']}")
    if val is not None:
        metrics["val"] = evaluate_topk(model, val, batch_size=batch_size, workers=workers, device=device)
    tmp = run / "model.safetensors.tmp"
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        str(tmp),
        metadata={"arch": type(model).arch, "mode": mode},
    )
    os.replace(tmp, run / "model.safetensors")
    _write_json(run / "metrics.json", metrics)
    click.echo(f"wrote {run / 'model.safetensors'} and {run / 'metrics.json'}")
