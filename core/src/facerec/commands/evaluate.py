"""facerun eval: run an evaluation protocol on a backbone (or on precomputed features) and write a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import DataError, ParameterError
from .extract import speed_options


def build_protocol(
    name: str,
    data: str | None,
    params: dict[str, Any],
    *,
    skip_missing: bool,
    flip: bool,
    image_size: int | None,
    data_template: str | None = None,
) -> Any:
    """Create the protocol with ``data`` and the CLI switches it accepts (clear error otherwise)."""
    from .. import registry

    obj = registry.load("protocol", name)
    accepted = registry.parameters(obj)
    params = dict(params)
    if data is not None:
        if "data" not in accepted:
            raise ParameterError(f"protocol {name!r} takes no --data (its parameters: {', '.join(accepted) or 'none'})")
        params.setdefault("data", data)
    elif "data" in accepted and accepted["data"].default is accepted["data"].empty:
        raise ParameterError(f"protocol {name!r} needs --data (its dataset root or file)")
    for key, value, flag in (("skip_missing", skip_missing, "--skip-missing"), ("flip", flip, "--flip")):
        if value:
            if key not in accepted:
                raise ParameterError(f"protocol {name!r} does not support {flag}")
            params.setdefault(key, True)
    if image_size is not None:
        if "image_size" not in accepted:
            raise ParameterError(f"protocol {name!r} does not take --image-size")
        params.setdefault("image_size", image_size)
    if data_template is not None:
        if "template" not in accepted:
            raise ParameterError(
                f"protocol {name!r} does not take --data-template (its images are not "
                "pre-aligned, or it aligns them itself)"
            )
        params.setdefault("template", data_template)
    return registry.create("protocol", name, **params)


@click.command(name="eval")
@click.option("--backbone", "-b", help="Backbone name, or onnx:FILE for an exported model (or use --features).")
@click.option(
    "--weights",
    "-w",
    help="Weights for the backbone: a file (safetensors or any registered original "
    "format) or a card name (`facerun weights list`).",
)
@click.option(
    "--features",
    "-f",
    type=click.Path(dir_okay=False),
    help="Precomputed features.safetensors from `facerun extract` (instead of --backbone).",
)
@click.option("--protocol", "-p", required=True, help="Protocol name, e.g. pairs, identification, ijb.")
@click.option("--data", type=click.Path(), help="The protocol's data: root folder or file (pairs.txt, .bin).")
@click.option(
    "--data-template",
    help="The alignment template the data's images are aligned to (pairs: arcface112 "
    "unless told); warped to the backbone's where they differ.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Report folder: metrics.json, summary.md, curves.")
@click.option("--flip", is_flag=True, help="Flip test-time augmentation (protocols that support it).")
@click.option("--skip-missing", is_flag=True, help="Evaluate without missing images; their count is reported.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--image-size", type=click.IntRange(min=8), help="Load images at this size (default: the backbone's).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KIND.KEY=VALUE",
    help="protocol.* or backbone.* parameter, e.g. protocol.accuracy=insightface (repeatable).",
)
@speed_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate(
    backbone: str | None,
    weights: str | None,
    features: str | None,
    protocol: str,
    data: str | None,
    data_template: str | None,
    out: str | None,
    flip: bool,
    skip_missing: bool,
    batch_size: int,
    device: str,
    image_size: int | None,
    params: tuple[str, ...],
    compile_: bool,
    precision: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Evaluate a backbone (or precomputed features) on a protocol; writes a report with --out."""
    from ..params import check_device
    from ..recipes import parse_params
    from .extract import build_backbone, fast_model

    if (backbone is None) == (features is None):
        raise ParameterError("give exactly one of --backbone or --features")
    if features is not None and weights is not None:
        raise ParameterError("--weights goes with --backbone, not with --features")
    if data is not None and not Path(data).exists():
        raise DataError(f"--data: not found: {data}")
    parsed = parse_params(params)
    device = check_device(device)
    proto = build_protocol(
        protocol,
        data,
        parsed["protocol"],
        skip_missing=skip_missing,
        flip=flip,
        image_size=image_size,
        data_template=data_template,
    )
    info: dict[str, Any] = {"protocol": protocol, "data": str(Path(data).resolve()) if data else ""}
    if features is not None:
        if flip:
            raise ParameterError("--flip applies when embedding; extract the features with --flip instead")
        from ..protocols.common import load_features

        table = load_features(features)
        info.update(features=str(Path(features).resolve()), backbone=table.meta.get("backbone", "?"))
        result = proto.evaluate_features(table)
    else:
        model, _, provenance = build_backbone(
            backbone, weights, [p for p in params if p.startswith("backbone.")], device
        )
        info.update(backbone=backbone, precision=precision, **provenance)
        if getattr(proto, "template", None) is not None:  # protocols of pre-aligned images: how they reach the model
            from ..protocols.common import plan_input

            info.update(plan_input(model, getattr(proto, "image_size", None), proto.template).record())
        model = fast_model(model, device, compile_=compile_, precision=precision, batch_size=batch_size)
        result = proto.evaluate(model, device=device, batch_size=batch_size, progress=not quiet)
        if weights is None:  # numbers from an untrained model: say so
            from ..reports import random_weights_warning

            click.echo(random_weights_warning("facerun eval"), err=True)
    if as_json:
        click.echo(json.dumps({k: float(v) for k, v in result.metrics.items()}, indent=2))
    else:
        click.echo(
            f"{protocol}: "
            + ", ".join(
                f"{k}={float(v):.4f}" if not k.startswith("n_") else f"{k}={int(v)}" for k, v in result.metrics.items()
            )
        )
        m = result.metrics
        if "accuracy" in m and "accuracy_std" in m and "n_folds" in m:  # the line a paper would quote
            tars = "; ".join(
                f"TAR {100 * float(v):.2f}% at FAR {k.split('=')[1]}" for k, v in m.items() if k.startswith("tar@far=")
            )
            click.echo(
                f"{protocol}: accuracy {100 * float(m['accuracy']):.2f}% ± {100 * float(m['accuracy_std']):.2f} "
                f"over {int(m['n_folds'])} folds" + (f"; {tars}" if tars else "")
            )
    if out is not None:
        from ..reports import write_report

        report = write_report(out, {protocol: result}, info)
        for msg in report["messages"]:
            click.echo(msg, err=True)
        click.echo(f"report written to {out}", err=as_json)
