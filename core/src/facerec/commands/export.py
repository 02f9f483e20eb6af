"""facerun export: write a backbone (with its weights) as an ONNX model, checked with ONNX Runtime."""

from __future__ import annotations

import click

from ..errors import ParameterError


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ParameterError(f"--batch {value!r}: use 'dynamic' or a positive batch size")


@click.command(name="export")
@click.option("--backbone", "-b", required=True, help="Backbone name (see `facerun plugins`).")
@click.option("--weights", "-w", help="Weights: a file (any registered format) or a card name (default: random init).")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output model file (.onnx).")
@click.option("--opset", type=click.IntRange(11, 30), help="ONNX opset (default: 17, or 18 with --exporter dynamo).")
@click.option(
    "--batch", "batch", default="dynamic", show_default=True, help="'dynamic' (any batch size) or a fixed batch size."
)
@click.option(
    "--with-preprocessing",
    is_flag=True,
    help="Fold the input spec (resize/crop, colour, mean/std) into the graph: the model then takes "
    "canonical images (float RGB in [0, 1], NCHW).",
)
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    show_default=True,
    help="torch's TorchScript-based exporter, or the torch.export-based one (needs onnxscript).",
)
@click.option("--no-check", is_flag=True, help="Skip the ONNX Runtime check against PyTorch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="backbone.KEY=VALUE",
    help="Backbone parameter, e.g. backbone.embedding_size=256 (repeatable).",
)
def export(
    backbone: str,
    weights: str | None,
    fmt: str,
    out: str,
    opset: int | None,
    batch: str,
    with_preprocessing: bool,
    exporter: str,
    no_check: bool,
    overwrite: bool,
    params: tuple[str, ...],
) -> None:
    """Export a backbone to ONNX: dynamic batch axis, facerec metadata, ONNX Runtime checked within 1e-4."""
    size = _batch(batch)
    if not out.endswith(".onnx"):
        raise ParameterError(f"--out {out}: an ONNX model file must end in .onnx")
    from ..onnx.export import export_onnx, require
    from .extract import build_backbone

    require("onnx")
    if not no_check:
        require("onnxruntime")
    if backbone.startswith("onnx:"):
        raise ParameterError("--backbone onnx:FILE is already an ONNX model")
    model, parsed, provenance = build_backbone(backbone, weights, params, "cpu")  # a card or a file
    result = export_onnx(
        model,
        out,
        name=backbone,
        params=parsed["backbone"],
        weights=provenance.get("weights_file"),
        opset=opset,
        batch=size,
        with_preprocessing=with_preprocessing,
        exporter=exporter,
        check=not no_check,
        overwrite=overwrite,
    )
    c, h, w = result.input_shape
    shape = f"[{'batch' if size is None else size}, {c}, {h}, {w}]"
    what = "canonical RGB images in [0, 1]" if with_preprocessing else "network input"
    click.echo(
        f"wrote {result.path}: {backbone}, input {shape} ({what}), "
        f"{result.metadata['facerec.embedding_size']}-d embedding, opset {result.opset}"
    )
    if result.max_abs_diff:
        diffs = ", ".join(f"{d:.2g} at batch {b}" for b, d in result.max_abs_diff.items())
        click.echo(f"ONNX Runtime vs PyTorch: max |diff| {diffs} (output scale {result.output_scale:.3g})")
    else:
        click.echo("not checked with ONNX Runtime (--no-check)")
