"""Pretrained weights: list registered cards, convert original checkpoints, pull from the Hub."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import ParameterError
from .common import parse_params


@click.group()
def weights() -> None:
    """Pretrained weights: list, convert, pull."""


@weights.command(name="list")
@click.option("--arch", help="Only cards for this architecture.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(arch: str | None, as_json: bool) -> None:
    """Registered weight cards: architecture, format, licence, files and published metrics."""
    from ..weights import cards

    good, bad = cards()
    if arch:
        matching = [c for c in good if c.arch == arch]
        if not matching and good:
            import difflib

            archs = sorted({c.arch for c in good})
            close = difflib.get_close_matches(arch, archs, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ParameterError(f"--arch {arch!r} matches no weight card{hint}; archs with cards: {', '.join(archs)}")
        good = matching
    if as_json:
        rows: list[dict[str, Any]] = [c.to_dict() for c in good]
        rows += [{"name": name, "error": err} for name, err in bad]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not good and not bad:
        click.echo("no weights registered (plugins register cards in the facerec.weights entry-point group)")
    for c in sorted(good, key=lambda c: c.name):
        metrics = ", ".join(f"{k} {v}" for k, v in c.metrics.items())
        click.echo(f"{c.name:<28} {c.arch:<16} {c.format:<11} licence: {c.licence}")
        for f in c.files:
            click.echo(f"    {f.filename}  {f.where}  sha256 {f.sha256[:12] or '?'}")
        if metrics:
            click.echo(f"    published: {metrics}")
        if c.origin:
            click.echo(f"    origin: {c.origin}")
    for name, err in bad:
        click.secho(f"{name:<28} error: {err}", fg="red")


@weights.command()
@click.argument("original")
@click.option("--arch", required=True, help="Registered backbone or generator the checkpoint belongs to.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Architecture parameter (repeatable).")
@click.option("--to", "out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
def convert(original: str, arch: str, params: tuple[str, ...], out: str) -> None:
    """Convert an original checkpoint (a file in any registered weight format, or a card) to safetensors,
    verified by strict load."""
    from ..outputs import check_output_file
    from ..weights import convert as do_convert
    from ..weights import resolve

    check_output_file(out, "--to", overwrite=True)  # writable, not under a file: known before converting
    info = do_convert(resolve(original), arch, out, parse_params(params))
    click.echo(
        f"wrote {info['out']}: {info['kind']} {arch} from a {info['source_format']} file, "
        f"{info['tensors']} tensors, {info['parameters']:,} values, sha256 {info['sha256'][:16]}... "
        "(verified by strict reload)"
    )


@weights.command()
@click.argument("name")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Hub cache folder (default: HF_HUB_CACHE).")
def pull(name: str, cache_dir: str | None) -> None:
    """Fetch a card's files into the Hugging Face cache (honours HF_HUB_OFFLINE) and verify sha256."""
    from ..weights import card
    from ..weights import pull as do_pull

    files = card(name).files
    for f, path in zip(files, do_pull(name, cache_dir)):
        click.echo(f"{path}  ({'sha256 verified' if f.sha256 else 'not verified: the card lists no sha256'})")
