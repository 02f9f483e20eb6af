"""facerun extract: embed an image folder, image list or LMDB into a safetensors feature file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..data.sources import image_batches, open_with_keys
from ..errors import DataError, FacerecError, ParameterError
from ..params import check_device


def build_backbone(name: str, weights: str | None, params: Sequence[str], device: str) -> tuple[Any, dict, dict]:
    """Create the backbone (the card's parameters, then ``--param backbone.k=v``), load ``--weights``
    (a file or a registered card) strictly, eval mode. Also returns the provenance reports keep:
    the resolved weight file, its sha256, the card, and the model's input spec."""
    import attrs

    import facerec
    from ..recipes import parse_params
    from ..weights import create_with_weights

    parsed = parse_params(params)
    unused = [k for k, v in parsed.items() if v and k not in ("backbone", "protocol", "dataset")]
    if unused:
        raise ParameterError(f"--param {unused[0]}.*: this command only takes backbone./protocol./dataset. params")
    if name.startswith("onnx:"):  # an exported model, run by ONNX Runtime
        from ..onnx.embedder import load_onnx_backbone

        return load_onnx_backbone(name, weights, parsed["backbone"], device), parsed, {"weights": name[5:]}
    info: dict[str, Any] = {"weights": str(weights or "(random init)")}
    if weights is None:
        model = facerec.create("backbone", name, **parsed["backbone"])
    else:  # the card's parameters and input spec, then a strict load: the one-step path users call too
        model, resolved = create_with_weights("backbone", name, weights, parsed["backbone"])
        info.update(resolved.record())
    spec = getattr(model, "input_spec", None)
    if spec is not None:
        info["input_spec"] = attrs.asdict(spec)
    return model.eval().to(device), parsed, info


def speed_options(f):
    """--compile / --precision, shared by extract and eval."""
    f = click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16"]),
        default="fp32",
        show_default=True,
        help="bf16/fp16 autocast (native on GPUs and CPUs with AMX / AVX-512-BF16), checked "
        "against the float64 forward (every embedding's cosine >= 0.999).",
    )(f)
    return click.option(
        "--compile",
        "compile_",
        is_flag=True,
        help="torch.compile the forward (inductor, frozen weights): a warm-up of seconds to "
        "minutes, then faster batches on some models (see docs/benchmarks.md).",
    )(f)


def fast_model(model: Any, device: str, *, compile_: bool, precision: str, batch_size: int) -> Any:
    """The checked fast inference path with the user's options; its fallbacks are told in one line each."""
    import warnings

    import torch

    from ..inference import optimize_for_inference

    if not isinstance(model, torch.nn.Module):  # an exported model (onnx:FILE) runs as it is
        if compile_ or precision != "fp32":
            raise ParameterError("--compile / --precision apply to PyTorch backbones, not to onnx:FILE models")
        return model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = optimize_for_inference(
            model, device=device, compile=compile_, precision=precision, batch_size=batch_size
        )
    for w in caught:
        click.echo(f"note: {str(w.message).splitlines()[0]}", err=True)
    return fast


@click.command(name="extract")
@click.option("--backbone", "-b", required=True, help="Backbone name (see `facerun plugins`), or onnx:FILE.")
@click.option(
    "--weights",
    "-w",
    help="Weights: a file (safetensors or any registered original format) or a card name (`facerun weights list`).",
)
@click.option("--data", required=True, type=click.Path(), help="Image folder, image list (path [label]), LMDB or .rec.")
@click.option(
    "--data-template",
    help="The alignment template the images are aligned to (default: what the data "
    "declares, e.g. an LMDB's __template__); warped to the backbone's where they differ.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors feature file.")
@click.option("--flip", is_flag=True, help="Add the embedding of the mirrored image (flip TTA).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--image-size", type=click.IntRange(min=8), help="Load images at this size (default: the backbone's).")
@click.option("--no-optimize", is_flag=True, help="Use the plain eager forward (no BatchNorm folding / channels-last).")
@speed_options
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KIND.KEY=VALUE",
    help="backbone.* or dataset.* parameter, e.g. backbone.embedding_size=256 (repeatable).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def extract(
    backbone: str,
    weights: str | None,
    data: str,
    data_template: str | None,
    out: str,
    flip: bool,
    batch_size: int,
    device: str,
    image_size: int | None,
    no_optimize: bool,
    compile_: bool,
    precision: str,
    params: tuple[str, ...],
    quiet: bool,
    overwrite: bool,
) -> None:
    """Embed images (folder, list or LMDB) into a features.safetensors file (batched, inference mode)."""
    import time

    from ..outputs import check_output_file

    if not out.endswith(".safetensors"):
        raise ParameterError(f"--out {out}: the feature file must end in .safetensors")
    check_output_file(out, "--out", overwrite=overwrite)  # before embedding a single image
    if no_optimize and (compile_ or precision != "fp32"):
        raise ParameterError("--no-optimize runs the plain eager forward: drop --compile / --precision with it")
    device = check_device(device)
    model, parsed, provenance = build_backbone(backbone, weights, params, device)
    from ..protocols.common import embed_images, plan_input, save_features

    if data_template is not None:
        parsed["dataset"]["template"] = data_template
    ds, keys = open_with_keys(data, None, parsed["dataset"])
    if len(ds) == 0:
        raise DataError(f"--data {data}: no images found")
    plan = plan_input(model, image_size, getattr(ds, "template", None))
    ds.image_size = plan.load_size  # every image decoded at the side the model (or the warp) needs
    if not no_optimize:
        model = fast_model(model, device, compile_=compile_, precision=precision, batch_size=batch_size)
    start = time.perf_counter()
    emb = embed_images(
        model,
        image_batches(ds, batch_size),
        len(ds),
        device=device,
        flip=flip,
        progress=not quiet,
        desc="extract",
        optimize=not no_optimize,
        plan=plan,
    )
    elapsed = time.perf_counter() - start
    labels = None if getattr(ds, "unlabelled", False) else ds.labels
    meta = {
        "backbone": backbone,
        **provenance,
        "data": str(Path(data).resolve()),
        "flip": str(bool(flip)),
        "image_size": str(plan.load_size),
        "precision": precision,
        **plan.record(),
        "format": "facerec-features-1",
    }
    try:
        save_features(out, keys, emb, labels if labels is not None and labels.numel() == len(keys) else None, meta)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    if weights is None:  # features of an untrained model: say so
        from ..reports import random_weights_warning

        click.echo(random_weights_warning("facerun extract"), err=True)
    click.echo(
        f"wrote {out}: {emb.shape[0]} x {emb.shape[1]} features in {elapsed:.1f}s "
        f"({emb.shape[0] / max(elapsed, 1e-9):.1f} images/s)"
    )


__all__ = ["extract", "build_backbone", "fast_model", "speed_options", "FacerecError"]
