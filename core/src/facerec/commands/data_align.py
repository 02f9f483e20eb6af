"""``facerun data align``: detect and align the faces of raw photos into face chips (registered on the
``data`` group in data.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DataError
from .common import Progress, parse_params


@click.command()
@click.argument("raw", type=click.Path())
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Output: NAME.lmdb for an LMDB, anything else for a folder (one sub-folder per identity).",
)
@click.option(
    "--template",
    required=True,
    help="Alignment template the chips are warped to (a name facerec.data.align knows, e.g. arcface112).",
)
@click.option("--detector", default="mtcnn", show_default=True, help="Registered face detector.")
@click.option("--detector-weights", help="Detector weights: a file, folder or card (default: the detector's own).")
@click.option(
    "--detector-param",
    "detector_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Other detector parameter, e.g. thresholds=[0.6,0.7,0.8] (repeatable).",
)
@click.option(
    "--min-size",
    type=click.IntRange(1, 1 << 16),
    help="Smallest face side searched, in pixels (default: the detector's; 20 for mtcnn).",
)
@click.option(
    "--largest/--all",
    "largest",
    default=True,
    help="Keep only the largest face of each photo (default) or every face found.",
)
@click.option("--size", type=click.IntRange(8, 4096), help="Chip side in pixels (default: the template's).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Photos per detection batch and per committed chunk (a killed run resumes from the last).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality of the chips."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def align(
    raw: str,
    out: str,
    template: str,
    detector: str,
    detector_weights: str | None,
    detector_params: tuple[str, ...],
    min_size: int | None,
    largest: bool,
    size: int | None,
    batch_size: int,
    device: str,
    quality: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Detect and align the faces in RAW (photos in identity sub-folders, or flat) into chips.

    Photos where no face is found, or that cannot be read, are listed in OUT.failures.csv (path,
    reason) and counted in the summary; an interrupted run resumes when run again.
    """
    if not Path(raw).is_dir():  # the cheap checks first, before torch is imported
        raise DataError(f"RAW {raw} is not a folder of photos")
    if Path(out).exists() and not overwrite:
        raise DataError(f"output {out} already exists (pass --overwrite)")
    from .. import registry
    from ..data.align import get_template
    from ..data.raw_faces import align_photos, scan_photos
    from ..params import check_device

    tpl = get_template(template)  # before the detector loads: a typo fails at once
    scan_photos(raw)  # an empty or badly laid out folder fails before the detector loads
    params = parse_params(detector_params, "--detector-param")
    if min_size is not None:
        params["min_size"] = min_size
    if detector_weights is not None:
        params["weights"] = detector_weights
    if check_device(device) != "cpu":
        params["device"] = device
    det = registry.create("detector", detector, **params)
    result = align_photos(
        raw,
        out,
        tpl.name,
        det,
        detector_name=detector,
        detector_params=params,
        select="largest" if largest else "all",
        size=size,
        chunk=batch_size,
        quality=quality,
        overwrite=overwrite,
        progress=Progress("aligning", quiet),
    )
    resumed = f", resumed at image {result.resumed_from}" if result.resumed_from else ""
    ids = f" of {result.identities} identities" if result.identities else " (unlabelled)"
    click.echo(
        f"aligned {result.faces} faces{ids} from {result.images - result.failed} of {result.images} images "
        f"to {result.path} (template {result.template}{resumed}); {result.failed} images without a face or "
        f"unreadable, listed in {result.failures_csv}"
    )
