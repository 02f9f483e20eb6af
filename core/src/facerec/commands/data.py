"""Dataset files: convert between formats, inspect, export registered datasets, draw sample grids,
align raw photos into face chips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import DataError, ParameterError
from .common import Progress, parse_params
from .data_align import align


def _dataset_from(source: str, params: dict[str, Any]):
    """A path on disk (any format) or a registered dataset name."""
    from ..data.formats import open_dataset

    if Path(source).exists():
        return open_dataset(source, **params), str(Path(source).resolve())
    from .. import registry

    return registry.create("dataset", source, **params), source


def _write(
    dataset: Any,
    out: str,
    fmt: str,
    source: str,
    quality: int,
    skip_corrupt: bool,
    overwrite: bool,
    image_size: int | None,
    quiet: bool,
    chunk: int,
) -> None:
    from ..data.writers import write_dataset

    result = write_dataset(
        dataset,
        out,
        fmt,
        quality=quality,
        skip_corrupt=skip_corrupt,
        overwrite=overwrite,
        source=source,
        image_size=image_size,
        chunk=chunk,
        progress=Progress(f"writing {fmt}", quiet),
    )
    resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
    skipped = f", skipped {result.skipped} corrupt" if result.skipped or skip_corrupt else ""
    click.echo(
        f"wrote {result.written} images of {result.num_classes} identities to {result.path} ({fmt}{resumed}{skipped})"
    )


_common_write = [
    click.option(
        "--quality",
        type=click.IntRange(1, 100),
        default=95,
        show_default=True,
        help="JPEG quality for images that must be (re-)encoded; stored JPEGs are copied as they are.",
    ),
    click.option(
        "--image-size",
        type=click.IntRange(8, 4096),
        default=None,
        help="Resize every image to this square size (re-encodes).",
    ),
    click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images and report how many."),
    click.option("--overwrite", is_flag=True, help="Replace an existing output."),
    click.option("--quiet", "-q", is_flag=True, help="No progress line."),
    click.option(
        "--chunk",
        type=click.IntRange(1, 1 << 20),
        default=256,
        show_default=True,
        help="Images per committed chunk (an interrupted write resumes from the last one).",
    ),
]


def _with(options):
    def deco(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


@click.group()
def data() -> None:
    """Dataset files: convert, info, export, show, align."""


#: output formats and the path suffixes that imply them (``--to train.lmdb``)
_FORMATS = ("lmdb", "folder", "list", "rec")
_SUFFIX_FORMATS = {".lmdb": "lmdb", ".mdb": "lmdb", ".rec": "rec"}


def _output(to: str, out: str | None, fmt: str | None) -> tuple[str, str]:
    """``(format, output path)`` from ``--to FORMAT --out PATH`` or ``--to PATH [--format FORMAT]``."""
    if to in _FORMATS and out is None and fmt is None:
        raise ParameterError(f"--to {to}: give the output path with --out (or pass the path as --to)")
    if to in _FORMATS and fmt is None:
        return to, str(out)
    if out is not None:
        raise ParameterError("give the output path once: --to PATH [--format F], or --to FORMAT --out PATH")
    fmt = fmt or _SUFFIX_FORMATS.get(Path(to).suffix.lower())
    if fmt is None:
        raise ParameterError(
            f"--to {to}: cannot tell the output format from the name; pass --format {'|'.join(_FORMATS)}"
        )
    return fmt, to


@data.command()
@click.argument("src")
@click.option(
    "--to",
    "to",
    required=True,
    help="Output path (format from its suffix: .lmdb, .rec; else --format), or a format with --out.",
)
@click.option("--format", "out_format", type=click.Choice(_FORMATS), help="Output format (when --to is a path).")
@click.option("--out", type=click.Path(), help="Output path, with --to FORMAT (a file for lmdb/.rec, else a folder).")
@click.option("--root", help="Image root of a list file (default: the list's folder).")
@click.option("--modality-rule", help="List modality: column index or regex (see `facerun info dataset image-list`).")
@click.option("--modality-values", help="What column values 0,1,... mean, e.g. NIR,VIS for DVG lists.")
@click.option("--label-pattern", help="Flat folder: regex whose first group in the path is the identity.")
@click.option("--mask", type=click.Path(), help="LMDB index mask .npy (write only the masked records).")
@click.option("--idx", type=click.Path(), help="RecordIO index of a .rec (default: beside it, same name).")
@_with(_common_write)
def convert(
    src: str,
    to: str,
    out_format: str | None,
    out: str | None,
    quality: int,
    image_size: int | None,
    skip_corrupt: bool,
    overwrite: bool,
    quiet: bool,
    chunk: int,
    **fmt_params: Any,
) -> None:
    """Convert SRC (image list, image folder, LMDB or RecordIO .rec) to another format; resumes when
    interrupted. ``--to train.lmdb`` / ``--to train.rec`` pick the format from the suffix."""
    from ..data.formats import open_dataset

    fmt, out = _output(to, out, out_format)
    if not Path(src).exists():
        raise DataError(f"SRC {src} does not exist")
    # the reader raises on corrupt images; the writer skips (and counts) them with --skip-corrupt
    params = {k: v for k, v in fmt_params.items() if v is not None}
    dataset = open_dataset(src, **params)
    if fmt == "rec" and (getattr(dataset, "modality", None) is not None or getattr(dataset, "has_features", False)):
        click.echo("note: RecordIO stores images and labels only; modality and features are not written", err=True)
    source = f"{Path(src).resolve()} {json.dumps(params, sort_keys=True)}"
    _write(dataset, out, fmt, source, quality, skip_corrupt, overwrite, image_size, quiet, chunk)


@data.command()
@click.argument("path", type=click.Path())
@click.option("--root", help="Image root of a list file.")
@click.option("--modality-rule", help="List modality rule (column index or regex).")
@click.option("--modality-values", help="Meaning of modality column values, e.g. NIR,VIS.")
@click.option("--label-pattern", help="Flat folder identity regex.")
@click.option("--mask", type=click.Path(), help="LMDB index mask .npy.")
@click.option("--idx", type=click.Path(), help="RecordIO index of a .rec (default: beside it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(path: str, as_json: bool, **fmt_params: Any) -> None:
    """Format, sample and identity counts, modality, image size and features of a dataset on disk."""
    from ..data.formats import detect_format, open_dataset

    partial = Path(path + ".partial")
    if not Path(path).exists() and partial.exists():
        raise DataError(
            f"{path} is not finished ({partial} holds an interrupted write; run the command again to resume it)"
        )
    fmt = detect_format(path)
    ds: Any = open_dataset(path, **{k: v for k, v in fmt_params.items() if v is not None})
    labels = ds.labels
    report: dict[str, Any] = {
        "path": str(path),
        "format": fmt,
        "samples": len(ds),
        "identities": int(labels[labels >= 0].unique().numel()),
        "num_classes": ds.num_classes,
        "unlabelled": int((labels < 0).sum()),
    }
    if ds.modality is not None:
        report["modality"] = {"VIS": int((ds.modality == 0).sum()), "NIR": int((ds.modality == 1).sum())}
    if fmt == "lmdb":
        report["records"] = ds.num_records
        report["features"] = bool(ds.has_features)
        if ds.mask_path is not None:
            report["mask"] = str(ds.mask_path)
    if fmt == "rec":
        report["records"] = ds.num_records
        report["index"] = str(ds.idx_path) if ds.indexed else "none (records found by scanning the .rec)"
        report["identity_records"] = 0 if ds.identity_ranges is None else len(ds.identity_ranges)
        if ds.property_classes is not None:
            report["property"] = {"classes": ds.property_classes, "image_size": "x".join(map(str, ds.property_size))}
    if len(labels):
        counts = labels[labels >= 0].bincount()
        counts = counts[counts > 0]
        if len(counts):
            report["images_per_identity"] = {
                "min": int(counts.min()),
                "median": float(counts.float().median()),
                "max": int(counts.max()),
            }
        first = ds[0]
        report["image_size"] = list(first["image"].shape[-2:])
        if "feature" in first:
            report["feature_dim"] = int(first["feature"].numel())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        click.echo(f"{key:>20}: {value}")


@data.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(list(_FORMATS)), required=True)
@click.option("--out", required=True, type=click.Path(), help="Output folder (or LMDB file).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Dataset parameter (repeatable).")
@_with(_common_write)
def export(
    name: str,
    fmt: str,
    out: str,
    params: tuple[str, ...],
    quality: int,
    image_size: int | None,
    skip_corrupt: bool,
    overwrite: bool,
    quiet: bool,
    chunk: int,
) -> None:
    """Write a registered dataset (e.g. synthetic) to real files in the papers' layouts.

    --overwrite replaces only an earlier facerec output (it carries a marker); anything else is refused."""
    from ..data.writers import check_output

    check_output(out, overwrite, "--out")  # before the dataset is even opened
    kwargs = parse_params(params)
    dataset, source = _dataset_from(name, kwargs)
    _write(
        dataset,
        out,
        fmt,
        f"{source} {json.dumps(kwargs, sort_keys=True, default=str)}",
        quality,
        skip_corrupt,
        overwrite,
        image_size,
        quiet,
        chunk,
    )


@data.command()
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output image (.png).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Dataset parameter (repeatable).")
@click.option("--count", type=click.IntRange(1, 1024), default=32, show_default=True, help="Samples to draw.")
@click.option("--columns", type=click.IntRange(1, 64), default=8, show_default=True)
def show(name: str, out: str, params: tuple[str, ...], count: int, columns: int) -> None:
    """Draw a labelled grid of samples of a registered dataset (or a dataset on disk)."""
    import torch

    from ..data.grid import save_grid

    dataset, _ = _dataset_from(name, parse_params(params))
    n = min(count, len(dataset))
    if n == 0:
        raise DataError(f"dataset {name} is empty")
    # spread the picks over the dataset so several identities show up
    idx = torch.linspace(0, len(dataset) - 1, n).round().long().unique().tolist()
    batch = dataset.batch(idx)
    if "image" not in batch:
        raise DataError(f"dataset {name} has no images to show (features only)")
    captions = None
    if "modality" in batch:
        captions = ["NIR" if int(m) else "VIS" for m in batch["modality"]]
    images = batch["image"]
    if images.dim() != 4:  # datasets whose batch() returns a list of differently sized images
        raise DataError(f"dataset {name} gives images of different sizes; pass --param image_size=N")
    path = save_grid(images, out, labels=batch["label"], captions=captions, ncol=columns)
    click.echo(f"wrote {len(idx)} samples of {name} to {path or out}")


data.add_command(align)  # its own module: data_align.py
