"""facerun: one thin command that combines any backbone, head, generator, dataset and protocol.

Subcommands other than ``plugins`` and ``info`` come from the ``facerec.commands`` entry points
(core's own included) and are imported only when run, so ``facerun --help`` and
``facerun plugins`` never import torch or a plugin.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import registry
from .errors import DuplicateComponentError, FacerecError


class FacerunGroup(click.Group):
    """A click group whose extra commands are entry points, loaded lazily and isolated."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        extra = [c.name for c in registry.components("command")]
        return sorted(set(super().list_commands(ctx)) | set(extra))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        try:
            comp = registry.find("command", name)
        except DuplicateComponentError as exc:
            comp = _core_of_duplicate(name, exc)
            if comp is None:  # two plugins, no core command: say how to pick one
                return _broken_command(name, str(exc))
        except FacerecError:
            return None
        try:
            loaded = registry.load("command", comp.qualified)
        except FacerecError as exc:
            return _broken_command(name, str(exc))
        return loaded

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from metadata and source docstrings: nothing is imported for --help.
        rows = []
        for name in self.list_commands(ctx):
            builtin = super().get_command(ctx, name)
            if builtin is not None:
                rows.append((name, builtin.get_short_help_str(60)))
            else:
                comp = next((c for c in registry.components("command") if c.name == name), None)
                rows.append((name, comp.summary if comp else ""))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """The one place where a :class:`FacerecError` (bad input, from any command, core's or a plugin's,
        or while resolving one) becomes one line on stderr and a non-zero exit, as click shows its own
        errors; without ``standalone_mode`` it is raised as that :class:`click.ClickException`."""
        try:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except FacerecError as exc:
            err = _one_line(exc)
            if not standalone_mode:
                raise err from None
            err.show()
            sys.exit(err.exit_code)


def _one_line(exc: FacerecError) -> click.ClickException:
    """The error as click prints it: its first line, and its exit code when it has one (signals)."""
    err = click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    err.exit_code = int(getattr(exc, "exit_code", 1))
    return err


def _core_of_duplicate(name: str, exc: DuplicateComponentError) -> registry.Component | None:
    """A command name registered by core and a plugin: core's runs, with a note naming the plugin's
    and how to run it (`facerun dist:name`), so installing a plugin never hides a core command."""
    dupes = [c for c in registry.components("command") if c.name == name]
    core = next((c for c in dupes if c.distribution == registry.CORE_DIST), None)
    if core is None:
        return None
    others = ", ".join(
        f"{c.distribution} {c.version} (run it as `facerun {c.qualified}`)" for c in dupes if c is not core
    )
    click.echo(f"note: command {name!r} is also registered by {others}; running {core.distribution}'s", err=True)
    return core


def _broken_command(name: str, message: str) -> click.Command:
    @click.command(
        name=name,
        help=f"(broken plugin) {message}",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def broken() -> None:
        raise click.ClickException(message)

    return broken


PIPELINE_OPTIONS = ("backbone", "head", "generator", "dataset", "protocol")


@click.group(cls=FacerunGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backbone", "-b", help="Backbone name (see `facerun plugins`).")
@click.option("--head", help="Head (training loss); default: the recipe's choice.")
@click.option("--generator", "-g", help="Generator whose samples are used for training.")
@click.option("--dataset", "-d", help="Training dataset; default: the embedded synthetic data.")
@click.option("--protocol", "-p", multiple=True, help="Evaluation protocol (repeatable).")
@click.option(
    "--preset",
    type=click.Choice(["quick", "paper"]),
    default="quick",
    show_default=True,
    help="quick: minutes on a CPU; paper: the papers' schedules.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (deletes it first).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--recipe", help="Training recipe (default: the generator's, else the backbone's, else standard).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KIND.KEY=VALUE",
    help="Extra component parameter, e.g. backbone.dropout=0.1 (repeatable).",
)
@click.version_option(package_name="facerec-core", prog_name="facerun")
@click.pass_context
def main(ctx: click.Context, backbone: str | None, **options: Any) -> None:
    """Train and evaluate any combination of installed components.

    \b
    facerun --backbone lightcnn29 --generator dvg     the default pipeline on synthetic data
    facerun plugins                                   what is installed
    facerun info backbone lightcnn29                  parameters, input spec, paper, weights
    """
    if ctx.invoked_subcommand is not None:
        return
    if backbone is None:
        if any(options.get(k) for k in PIPELINE_OPTIONS):
            raise click.UsageError("the pipeline needs --backbone")
        click.echo(ctx.get_help())
        return
    from .recipes import run_pipeline  # imported only when a run starts

    # continuing a run is `facerun train --resume`; here an existing run is only replaced
    run_pipeline(backbone=backbone, resume_option=None, **options)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", is_flag=True, help="Also import every component and report failures.")
def plugins(as_json: bool, check: bool) -> None:
    """What is installed, by kind, with distributions, versions and errors."""
    comps = registry.components()
    rows = []
    failed = []  # (kind, name, distribution) of components that do not load
    for c in comps:
        error = c.error
        if check and error is None:
            try:
                registry.load(c.kind, c.qualified)
            except FacerecError as exc:
                error = str(exc)
        if error is not None:
            failed.append(f"{c.kind} {c.name} ({c.distribution})")
        dup = [o.distribution for o in comps if o.kind == c.kind and o.name == c.name and o is not c]
        if dup and error is None:
            error = f"duplicate name, also in {', '.join(dup)}; select with {c.qualified!r}"
            if c.kind == "command" and registry.CORE_DIST in (*dup, c.distribution):
                error += f" (`facerun {c.name}` runs {registry.CORE_DIST}'s)"
        rows.append(
            {
                "kind": c.kind,
                "name": c.name,
                "distribution": c.distribution,
                "version": c.version,
                "summary": c.summary,
                "error": error,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_plugins(rows)
    if check and failed:
        shown = ", ".join(failed[:5]) + (f", ... (+{len(failed) - 5} more)" if len(failed) > 5 else "")
        raise click.ClickException(f"{len(failed)} of {len(comps)} components failed to load: {shown}")


def _print_plugins(rows: list[dict[str, Any]]) -> None:
    for kind in registry.KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        click.secho("weights:" if kind == "weights" else f"{kind}s:", bold=True)
        for r in mine:
            line = f"  {r['name']:<24} {r['distribution']} {r['version']}"
            if r["summary"]:
                line += f"  {r['summary']}"
            click.echo(line)
            if r["error"]:
                click.secho(f"    error: {r['error']}", fg="red")


@main.command()
@click.argument("kind", type=click.Choice([k for k in registry.KINDS if k != "command"]))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def info(kind: str, name: str, as_json: bool) -> None:
    """Parameters, input spec, paper and available weights of one component."""
    data = registry.describe(kind, name)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.secho(f"{data['kind']} {data['name']}  ({data['distribution']} {data['version']})", bold=True)
    if data["summary"]:
        click.echo(f"  {data['summary']}")
    if data.get("paper"):
        click.echo(f"  paper: {data['paper']}")
    if data.get("embedding_size"):
        click.echo(f"  embedding size: {data['embedding_size']}")
    if data.get("input_spec"):
        click.echo("  input: " + ", ".join(f"{k}={v}" for k, v in data["input_spec"].items()))
    if data.get("stages"):
        click.echo("  stages (--stage): " + ", ".join(data["stages"]))
    if data.get("defaults"):
        click.echo(
            "  falls back to: "
            + ", ".join(
                f"{k} {', '.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in data["defaults"].items()
            )
        )
    if data["parameters"]:
        click.echo("  parameters (--param recipe.NAME=VALUE):" if kind == "recipe" else "  parameters:")
        for pname, p in data["parameters"].items():
            default = "required" if p["required"] else f"default {p['default']!r}"
            if "paper" in p and p["paper"] != p["default"]:  # a recipe's per-preset defaults
                default = f"quick {p['default']!r}, paper {p['paper']!r}"
            declared = "; ".join(p[k] for k in ("type", "range") if p.get(k))
            click.echo(
                f"    {pname}: {default}"
                + (f" ({declared})" if declared else "")
                + (f"  {p['help']}" if p.get("help") else "")
            )
    if data.get("weights") is not None:
        click.echo("  weights: " + (", ".join(data["weights"]) or "none registered"))


def run() -> None:
    """Console-script entry point: user errors become one line and a non-zero exit (:meth:`FacerunGroup.main`)."""
    main(standalone_mode=True)


if __name__ == "__main__":
    run()
