"""facerun generate: draw an identity-labelled image set from ANY registered generator into the
HSFace/Vec2Face LMDB layout (or an image folder / list), sharded and resumable, with images/s.

Identities are generated in blocks aligned with the writer's chunks. A generator whose ``sample``
accepts ``first_id`` reproduces identity ``i`` the same way in any shard or run; for others each
block gets its own seed derived from ``--seed`` and the block's first id. Labels are global
(``first_id + i``), so shards written separately never collide. An interrupted write resumes from
its last committed chunk when the same command is run again.

A generator that marks its images NIR or VIS (DVG-Face, DVG) has that modality written too: the list's
third column, the LMDB's ``__modality__`` key, or ``_NIR`` / ``_VIS`` at the end of a folder's file names.

Generator-specific conditions go through ``--condition KEY=VALUE`` (passed to ``sample`` when it
accepts them), e.g. for vec2face ``--condition centers=centers.npy --condition yaw=45
--condition quality=25``; constructor parameters through ``--param KEY=VALUE``; a facerec weights file
that stores them (``params`` metadata, as the recipes and ``weights convert`` write it) needs none, and a
training checkpoint (its ``model/generator/`` part) loads too.

A generator may report on its sampling: ``generation_report()`` returning ``{identity: {name: count}}``
for its last ``sample`` call (vec2face: how many samples met the AttrOP targets). The counts are kept per
identity in ``OUT.report.json`` (updated with every committed chunk, so a resumed run keeps them) and
summed per run on the terminal. A run that fails after writing leaves ``OUT.partial`` and says how to
resume it (the same command again) or clean it (delete it); one that wrote nothing leaves nothing.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import click

from ..errors import DataError, ParameterError


def _pairs(items: tuple[str, ...], option: str) -> dict[str, Any]:
    from ..recipes import parse_assignments

    return parse_assignments(items, option)


def _shard(text: str | None, num_ids: int) -> tuple[int, int]:
    """``I/N`` -> the id range [a, b) of shard I (0-based) of N."""
    if not text:
        return 0, num_ids
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ParameterError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ParameterError(f"--shard {text!r}: need 0 <= I < N")
    return num_ids * i // n, num_ids * (i + 1) // n


class GeneratedIdentities:
    """A lazy facerec Dataset over generator samples: identity blocks are drawn when the writer asks."""

    def __init__(
        self,
        generator: Any,
        first: int,
        last: int,
        per_id: int,
        *,
        seed: int,
        device: str,
        batch_size: int,
        conditions: dict[str, Any],
    ):
        self.gen, self.first, self.per_id = generator, first, per_id
        self.num_ids = last - first
        self.seed, self.device, self.batch_size = seed, device, batch_size
        self.conditions = conditions
        params = inspect.signature(generator.sample).parameters
        self.by_id = "first_id" in params
        self.num_classes = last
        self.generated_images = 0
        self.seconds = 0.0
        self.report: dict[int, dict[str, int]] = {}  # per identity, when the generator reports on sampling

    def __len__(self) -> int:
        return self.num_ids * self.per_id

    @property
    def labels(self):
        import torch

        return torch.arange(self.first, self.first + self.num_ids).repeat_interleave(self.per_id)

    def __getitem__(self, index: int) -> dict[str, Any]:
        b = self.batch([index])
        return {k: (v[0] if k == "image" else int(v[0])) for k, v in b.items()}

    def batch(self, indices: list[int]) -> dict[str, Any]:
        import torch

        lo, hi = min(indices) // self.per_id, max(indices) // self.per_id + 1  # local identity range
        first_id = self.first + lo
        kwargs = dict(self.conditions)
        if self.by_id:
            kwargs["first_id"] = first_id
            seed = self.seed
        else:
            seed = self.seed * 1_000_003 + first_id
        t0 = time.perf_counter()
        parts = list(
            self.gen.sample(hi - lo, self.per_id, seed=seed, device=self.device, batch_size=self.batch_size, **kwargs)
        )
        self.seconds += time.perf_counter() - t0
        report = getattr(self.gen, "generation_report", None)
        if callable(report):
            self.report.update({int(k) + (0 if self.by_id else first_id): dict(v) for k, v in report().items()})
        images = torch.cat([p.images for p in parts])
        labels = torch.cat([p.labels for p in parts]).long()
        if not self.by_id:
            labels = labels + first_id
        if images.shape[0] != (hi - lo) * self.per_id:
            raise DataError(f"generator returned {images.shape[0]} images for {hi - lo} ids x {self.per_id}")
        self.generated_images += len(images)
        rows = torch.as_tensor(indices) - lo * self.per_id
        out = {"image": images[rows], "label": labels[rows]}
        if all(p.modality is not None for p in parts):  # NIR/VIS generators: the writers keep it
            out["modality"] = torch.cat([p.modality for p in parts]).long()[rows]
        return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--generator", "-g", "name", required=True, help="Registered generator (see `facerun plugins`).")
@click.option(
    "--weights", "-w", help="Weights: a file (original or safetensors) or a card name (`facerun weights list`)."
)
@click.option("--ids", type=click.IntRange(1), required=True, help="Number of identities (all shards together).")
@click.option("--per-id", type=click.IntRange(1), required=True, help="Images per identity.")
@click.option("--out", required=True, type=click.Path(), help="Output: data.lmdb (or a folder with --format).")
@click.option("--format", "fmt", type=click.Choice(["lmdb", "folder", "list"]), default="lmdb", show_default=True)
@click.option("--shard", help="I/N: write only shard I of N (ids split evenly; labels stay global).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--ids-per-chunk",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Identities generated and committed per chunk (the resume granularity).",
)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Generator constructor parameter.")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="KEY=VALUE",
    help="Sampling condition passed to the generator's sample() (e.g. centers=c.npy, yaw=45).",
)
@click.option(
    "--quality", "jpeg_quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def generate(
    name: str,
    weights: str | None,
    ids: int,
    per_id: int,
    out: str,
    fmt: str,
    shard: str | None,
    seed: int,
    device: str,
    batch_size: int,
    ids_per_chunk: int,
    params: tuple[str, ...],
    conditions: tuple[str, ...],
    jpeg_quality: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Generate an identity-labelled image set with any generator (HSFace LMDB layout)."""
    from .. import registry
    from ..params import check_device
    from .common import Progress

    check_device(device)
    ctor = _pairs(params, "--param")
    cond = _pairs(conditions, "--condition")
    first, last = _shard(shard, ids)
    if first == last:
        raise ParameterError(f"--shard {shard}: no identities in this shard ({ids} ids in all)")
    state = None
    if weights:
        from ..weights import card_params, resolve

        ctor = card_params("generator", name, weights, ctor)[1]  # a card's parameters, checked before the fetch
        weights = str(resolve(weights))
        stored, state = _stored_generator(Path(weights), name)
        ctor = {**stored, **ctor}  # the file's build parameters; --param still wins
    gen = registry.create("generator", name, **ctor)
    if getattr(gen, "output", "image") != "image":
        raise ParameterError(f"generator {name!r} yields features, not images; facerun generate writes images")
    accepted = inspect.signature(gen.sample).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    for key in cond:
        if key not in accepted and not takes_any:
            raise ParameterError(
                f"--condition {key}: generator {name!r} sample() has no such option; "
                f"it accepts {', '.join(k for k in accepted if k not in ('self',))}"
            )
    if state is not None:
        from ..weights import strict_load

        strict_load(gen, state, weights)
    elif weights:
        from ..weights import load_weights

        load_weights(gen, weights)
    if not Path(out).parent.exists():
        raise DataError(f"output folder {Path(out).parent} does not exist")
    if weights is None:  # images from an untrained generator: say so before the long part
        from ..reports import random_weights_warning

        click.echo(random_weights_warning("facerun generate", f"generator {name!r}"), err=True)
    dataset = GeneratedIdentities(
        gen, first, last, per_id, seed=seed, device=device, batch_size=batch_size, conditions=cond
    )
    from ..data.writers import write_dataset

    source = repr(
        {
            "generator": name,
            "weights": str(Path(weights).resolve()) if weights else None,
            "params": ctor,
            "conditions": cond,
            "ids": ids,
            "per_id": per_id,
            "shard": [first, last],
            "seed": seed,
        }
    )
    t0 = time.perf_counter()
    progress = Progress("generating", quiet)
    report_path = Path(str(out) + ".report.json")

    commits = []

    def committed(done: int, total: int) -> None:
        progress(done, total)
        commits.append(done)
        if dataset.report:  # kept per committed chunk, so a resumed run keeps earlier chunks' numbers
            _write_report(report_path, dataset.report, first)

    partial = Path(str(out) + ".partial")
    resuming = partial.exists()
    try:
        result = write_dataset(
            dataset,
            out,
            fmt,
            quality=jpeg_quality,
            chunk=ids_per_chunk * per_id,
            overwrite=overwrite,
            source=source,
            progress=committed,
        )
    except (Exception, KeyboardInterrupt) as exc:
        if not partial.exists():
            raise
        if not resuming and not commits:  # nothing was written: leave nothing behind
            _remove(partial)
            raise
        hint = (
            f"{partial} keeps the images written so far: run the same command again to resume from there, "
            f"or delete {partial} to start over"
        )
        if isinstance(exc, DataError | ParameterError):
            raise type(exc)(f"{str(exc).splitlines()[0]}; {hint}") from None
        click.echo(f"generation stopped ({type(exc).__name__}); {hint}", err=True)
        raise
    elapsed = time.perf_counter() - t0
    rate = dataset.generated_images / elapsed if elapsed > 0 else 0.0
    resumed = f", resumed at image {result.resumed_from}" if result.resumed_from else ""
    if dataset.report:
        totals = _write_report(report_path, dataset.report, first)
        click.echo(f"attribute control: {totals['summary']} (per identity: {report_path})")
    click.echo(
        f"wrote {result.written} images of identities {first}..{last - 1} to {result.path} "
        f"({fmt}{resumed}; {rate:.1f} images/s overall, "
        f"generator {dataset.generated_images / max(dataset.seconds, 1e-9):.1f} images/s)"
    )


def _stored_generator(path: Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What a facerec file says about the generator in it: its build parameters (``params`` metadata, as
    ``save_weights`` callers and ``weights convert`` write them) and, for a training checkpoint of
    ``facerun train`` / the recipes, its ``model/generator/`` state (else None: load the file as it is)."""
    import json

    from ..weights import format_of, read_metadata

    if not format_of(path).native:
        return {}, None
    meta = read_metadata(path)
    state = None
    if "facerec_checkpoint" in meta:  # a training checkpoint: modules under model/<name>/
        from ..engine.checkpoint import module_state

        state = module_state(path, "generator")
        try:
            stored = json.loads(meta.get("meta", "{}"))
            meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in stored.items()}
        except ValueError:
            meta = {}
    arch, kind = meta.get("arch"), meta.get("kind", "generator")
    if arch is None or kind != "generator":
        return {}, state
    from .. import registry

    if registry.load("generator", arch) is not registry.load("generator", name):
        raise ParameterError(f"--weights {path} holds a {arch!r} generator, not {name!r}")
    try:
        params = json.loads(meta.get("params", "{}"))
    except ValueError:
        raise DataError(f"{path}: metadata 'params' is not JSON: {meta['params'][:60]!r}") from None
    return (dict(params) if isinstance(params, dict) else {}), state


def _write_report(path: Path, per_identity: dict[int, dict[str, int]], first: int) -> dict[str, Any]:
    """Merge this run's per-identity numbers into ``OUT.report.json`` (atomically) and sum them per run."""
    import json
    import os

    try:
        old = json.loads(path.read_text()).get("per_identity", {}) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    merged = {**old, **{str(k): v for k, v in sorted(per_identity.items())}}
    run: dict[str, int] = {}
    for stats in merged.values():
        for key, value in stats.items():
            run[key] = run.get(key, 0) + int(value)
    parts = []
    if "centre_accepted" in run:
        parts.append(f"{run['centre_accepted']} of {len(merged)} identity vectors met the targets")
    if "samples" in run:
        parts.append(f"{run.get('samples_accepted', 0)} of {run['samples']} samples met the targets")
    data = {"run": {"identities": len(merged), **run}, "summary": "; ".join(parts), "per_identity": merged}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return data


def _remove(path: Path) -> None:
    import shutil

    for p in (path, Path(str(path) + "-lock")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
