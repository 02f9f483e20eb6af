"""The pipeline behind ``facerun --backbone B [...]`` and ``facerun train``: validate every name and
parameter first, resolve the recipe, create the run directory, run the recipe, write the results.

Recipes are entry points in group ``facerec.recipes``: ``recipe(config: PipelineConfig, run: RunDir)
-> dict`` of final metrics. A recipe may declare ``recipe.params = {knob: default}`` (validated
``--param recipe.KEY=VALUE`` knobs) and ``recipe.stages = ("stage", ...)`` (``--stage`` values). The
helpers here (``build_backbone``, ``build_dataset``, ``build_head``, ``build_generator``,
``build_protocols``, ``train_config``, ``evaluate_protocols``) build components with the user's
parameters and the image size the backbone wants, so recipes stay short.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import registry
from .errors import FacerecError, ParameterError

PARAM_KINDS = ("backbone", "head", "generator", "dataset", "protocol", "train", "recipe")
PRESETS = ("quick", "paper")
DEFAULT_DATASET = "synthetic"
DEFAULT_HEAD = "arcface"
DEFAULT_PROTOCOL = "synthetic-pairs"


# --------------------------------------------------------------------------- parameters
def _literal(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    if lowered.lstrip("+-") in ("nan", "inf", "infinity"):
        return float(lowered)  # a number (refused later where a finite one is needed), not a string
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text  # a plain string
    return value


def parse_params(params: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``("backbone.width=16", "train.steps=20")`` -> ``{"backbone": {"width": 16}, "train": {"steps": 20}}``."""
    out: dict[str, dict[str, Any]] = {k: {} for k in PARAM_KINDS}
    for item in params:
        key, sep, value = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ParameterError(f"--param {item!r}: expected KIND.KEY=VALUE (e.g. train.steps=20)")
        if kind not in PARAM_KINDS:
            raise ParameterError(f"--param {item!r}: unknown kind {kind!r}; kinds: {', '.join(PARAM_KINDS)}")
        out[kind][name] = _literal(value)
    return out


@attrs.define(kw_only=True)
class PipelineConfig:
    """The resolved configuration of one pipeline run (written to ``config.json``).

    ``params`` maps a kind (backbone, head, generator, dataset, protocol, train, recipe) to keyword
    overrides; ``protocols`` are names (default: the recipe's); ``stage`` selects a recipe stage.
    """

    backbone: str
    head: str | None = None
    generator: str | None = None
    dataset: str | None = None
    protocols: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    preset: str = "quick"
    seed: int = 0
    device: str = "cpu"
    recipe: str = "standard"
    stage: str | None = None
    resume: bool = False
    out: str = ""
    params: dict[str, dict[str, Any]] = attrs.field(factory=lambda: {k: {} for k in PARAM_KINDS})

    def kind_params(self, kind: str) -> dict[str, Any]:
        return dict(self.params.get(kind, {}))

    def recipe_params(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Recipe knobs: ``defaults`` updated with ``--param recipe.KEY=VALUE`` (unknown keys refused)."""
        given = self.kind_params("recipe")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ParameterError(f"recipe {self.recipe!r} has no knob recipe.{unknown[0]}; "
                                 f"knobs: {', '.join(defaults) or 'none'}")
        return {**defaults, **given}

    @property
    def quick(self) -> bool:
        return self.preset == "quick"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# --------------------------------------------------------------------------- run directory
@attrs.define
class RunDir:
    """A run's output folder. Every write goes to a temporary name first and is renamed into place.

    ``headline``: a few lines a recipe sets to end the run's console output with (its verdict); without
    one, ``facerun`` prints every final metric."""

    path: Path = attrs.field(converter=Path)
    headline: str = ""

    def __attrs_post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _atomic(self, name: str, data: bytes) -> Path:
        target = self.file(name)
        if not _main_process():  # under torchrun rank 0 alone writes the run's reports
            return target
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self._atomic(name, text.encode("utf-8"))

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        target = self.path / name
        if not target.is_file():
            return default
        try:
            return json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise FacerecError(f"{target}: not valid JSON ({exc.msg}, line {exc.lineno})") from None

    def write_markdown(self, name: str, title: str,
                       tables: Mapping[str, Sequence[Mapping[str, Any]] | str] | None = None, text: str = "") -> Path:
        """A markdown page: ``# title``, free text, then one section per ``{caption: rows}`` (a table, or
        markdown text when the value is a string)."""
        parts = [f"# {title}", ""]
        if text:
            parts += [text.rstrip(), ""]
        for caption, rows in (tables or {}).items():
            parts += [f"## {caption}", "", rows.rstrip() if isinstance(rows, str) else markdown_table(rows), ""]
        return self.write_text(name, "\n".join(parts))

    def save_png(self, name: str, image: Any) -> Path:
        """Save a matplotlib figure, a ``[3,H,W]``/``[H,W,3]`` float tensor in [0,1], or an image grid."""
        buf = io.BytesIO()
        if hasattr(image, "savefig"):
            image.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        else:
            import numpy as np
            import torch
            from PIL import Image

            arr = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
            if arr.dim() == 4:
                arr = image_grid(arr)
            if arr.dim() == 3 and arr.shape[0] in (1, 3):
                arr = arr.permute(1, 2, 0)
            arr = arr.float()
            if arr.max() > 1.0:
                arr = arr / 255.0
            data = (arr.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(-1).numpy()
            Image.fromarray(data).save(buf, format="PNG")
        return self._atomic(name, buf.getvalue())

    def save_safetensors(self, name: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
        from .engine.checkpoint import atomic_save

        target = self.file(name)
        if not _main_process():
            return target
        atomic_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, target,
                    dict(metadata) if metadata else None)
        return target

    def checkpoint(self, stage: str = "train", which: str = "last") -> Path:
        """Where the Trainer named ``stage`` keeps its checkpoint in this run."""
        return self.path / "checkpoints" / f"{stage}-{which}.safetensors"


def _main_process() -> bool:
    from .engine.distributed import is_main_process

    return is_main_process()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts -> a markdown table (columns in first-seen order)."""
    if not rows:
        return "(none)"
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |" for row in rows]
    return "\n".join(lines)


def image_grid(images: Any, nrow: int = 8) -> Any:
    """``[N,C,H,W]`` -> one ``[C, rows*H, nrow*W]`` grid (vectorised)."""
    import torch

    n, c, h, w = images.shape
    nrow = min(nrow, n)
    rows = math.ceil(n / nrow)
    pad = images.new_zeros((rows * nrow - n, c, h, w))
    full = torch.cat([images, pad]).reshape(rows, nrow, c, h, w)
    return full.permute(2, 0, 3, 1, 4).reshape(c, rows * h, nrow * w)


# --------------------------------------------------------------------------- validation
def _check_params(kind: str, name: str, given: Mapping[str, Any], implicit: Iterable[str] = (),
                  known_only: bool = False) -> dict[str, Any]:
    """Names, types and declared ranges of ``--param kind.*`` for component ``name``; returns the values
    (numbers given for string parameters become strings). ``known_only``: skip keys it does not take."""
    from . import params as P

    obj = registry.load(kind, name)
    if not given:
        return {}
    if known_only:
        given = {k: v for k, v in given.items() if _accepts(obj, k)}
    elif not registry._accepts_any(obj):
        accepted = registry.parameters(obj)
        for key in given:
            if key in implicit and key not in accepted:
                continue
            if key not in accepted:
                import difflib

                close = difflib.get_close_matches(key, list(accepted), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ParameterError(f"--param {kind}.{key}: {kind} {name!r} has no parameter {key!r}{hint}; "
                                     f"accepted: {', '.join(accepted) or 'none'}")
    return P.check(obj, given, lambda key: f"--param {kind}.{key} ({kind} {name})", coerce=True)


def resolve_recipe(explicit: str | None, backbone: str, generator: str | None) -> str:
    """--recipe, else the generator class's ``recipe``, else the backbone class's, else ``standard``."""
    if explicit:
        return explicit
    if generator:
        found = getattr(registry.load("generator", generator), "recipe", None)
        if found:
            return str(found)
    found = getattr(registry.load("backbone", backbone), "recipe", None)
    return str(found) if found else "standard"


def validate(config: PipelineConfig) -> Callable[[PipelineConfig, RunDir], dict]:
    """Check every name, parameter, stage and option before any heavy work; return the recipe."""
    if config.preset not in PRESETS:
        raise ParameterError(f"--preset must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    registry.find("recipe", config.recipe)
    recipe = registry.load("recipe", config.recipe)
    if not callable(recipe):
        raise FacerecError(f"recipe {config.recipe!r} is not callable")
    # components the recipe falls back to (``recipe.defaults``) get the user's --param values too
    defaults = dict(getattr(recipe, "defaults", None) or {})
    chosen = [("backbone", config.backbone, True), ("head", config.head or defaults.get("head"), bool(config.head)),
              ("generator", config.generator, True),
              ("dataset", config.dataset or defaults.get("dataset"), bool(config.dataset))]
    chosen += [("protocol", p, bool(config.protocols))
               for p in (config.protocols or tuple(defaults.get("protocols", ())))]
    for kind, name, named in chosen:
        if name:
            registry.find(kind, name)
            # a recipe's default component ignores keys it does not take (build() filters them)
            checked = _check_params(kind, name, config.kind_params(kind), known_only=not named)
            config.params.setdefault(kind, {}).update(checked)
    from . import params as P
    from .engine.config import TrainConfig

    train = P.check(TrainConfig, config.kind_params("train"), lambda key: f"train.{key}")
    TrainConfig().with_overrides(train)
    knobs = getattr(recipe, "params", None)
    if knobs is not None:
        config.recipe_params(knobs)
    stages = tuple(getattr(recipe, "stages", ()) or ())
    if config.stage is not None and config.stage not in stages:
        raise ParameterError(f"--stage {config.stage!r}: recipe {config.recipe!r} has "
                             + (f"stages {', '.join(stages)}" if stages else "no stages"))
    dev = config.device
    if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ParameterError(f"--device must be cpu, cuda or cuda:N, got {dev!r}")
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(f"--device {dev}: CUDA is not available on this machine")
    return recipe


# --------------------------------------------------------------------------- helpers for recipes
def _accepts(obj: Any, name: str) -> bool:
    return name in registry.parameters(obj) or registry._accepts_any(obj)


def build(config: PipelineConfig, kind: str, name: str, *, image_size: int | None = None,
          **overrides: Any) -> Any:
    """Create ``kind`` ``name`` with the user's ``--param kind.*`` values over ``overrides``; passes
    ``image_size`` when the component accepts it and the user did not set it."""
    params = {**overrides, **config.kind_params(kind)} if kind not in ("head",) else \
        {**config.kind_params(kind), **overrides}
    obj = registry.load(kind, name)
    if image_size is not None and "image_size" not in params and "image_size" in registry.parameters(obj):
        params["image_size"] = image_size
    params = {k: v for k, v in params.items() if _accepts(obj, k)}
    if kind == "protocol":
        from .engine.validation_sets import ValidationSets, names_several

        if names_several(params.get("data")):  # data=DIR/*.bin: one protocol per set, evaluated together
            return ValidationSets(lambda data: registry.create(kind, name, **{**params, "data": data}), params["data"])
    return registry.create(kind, name, **params)


def build_backbone(config: PipelineConfig, **overrides: Any) -> Any:
    return build(config, "backbone", config.backbone, **overrides)


def canonical_size(backbone: Any) -> int:
    """The square canonical-image side the backbone wants its data rendered/loaded at."""
    return int(backbone.input_spec.canonical_size)


def build_dataset(config: PipelineConfig, backbone: Any, name: str | None = None, **overrides: Any) -> Any:
    return build(config, "dataset", name or config.dataset or DEFAULT_DATASET,
                 image_size=canonical_size(backbone), **overrides)


def build_head(config: PipelineConfig, embedding_size: int, num_classes: int, name: str | None = None,
               **overrides: Any) -> Any:
    """Head with the user's params; ``embedding_size``/``num_classes`` always come from the data."""
    params = {**overrides, **config.kind_params("head"), "embedding_size": embedding_size,
              "num_classes": num_classes}
    return registry.create("head", name or config.head or DEFAULT_HEAD, **params)


def build_generator(config: PipelineConfig, backbone: Any | None = None, **overrides: Any) -> Any:
    if not config.generator:
        raise FacerecError("this recipe needs --generator")
    size = canonical_size(backbone) if backbone is not None else None
    return build(config, "generator", config.generator, image_size=size, **overrides)


def build_protocols(config: PipelineConfig, backbone: Any, default: Sequence[str] = (DEFAULT_PROTOCOL,),
                    **overrides: Any) -> dict[str, Any]:
    """``{name: Protocol}`` for ``--protocol`` (or ``default``), rendered at the backbone's size."""
    names = config.protocols or tuple(default)
    return {n: build(config, "protocol", n, image_size=canonical_size(backbone), **overrides) for n in names}


def train_config(config: PipelineConfig, defaults: Mapping[str, Any] | None = None) -> Any:
    """TrainConfig from recipe ``defaults`` (per preset), then ``--param train.*``, with seed and device."""
    from .engine.config import TrainConfig

    base = TrainConfig(seed=config.seed, device=config.device)
    if defaults:
        base = base.with_overrides(defaults)
    return base.with_overrides(config.kind_params("train"))


def evaluate_protocols(protocols: Mapping[str, Any], backbone: Any, *, device: str = "cpu",
                       run: RunDir | None = None, tag: str = "") -> dict[str, float]:
    """Evaluate a backbone with each protocol; flat ``{"protocol/metric": value}``. With ``run``,
    artefacts go to ``eval/<tag><protocol>.json`` and ROC curves (when present) to pictures/."""
    import torch

    metrics: dict[str, float] = {}
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for name, proto in protocols.items():
                result = proto.evaluate(backbone, device=device)
                for k, v in result.metrics.items():
                    metrics[f"{name}/{k}"] = float(v)
                if run is not None:
                    run.write_json(f"eval/{tag}{name}.json", {"metrics": dict(result.metrics),
                                                              "convention": result.convention,
                                                              "artefacts": result.artefacts})
                    _maybe_roc(run, f"pictures/{tag}{name}-roc.png", result.artefacts, name)
    finally:
        backbone.train(was)
    return metrics


def _maybe_roc(run: RunDir, name: str, artefacts: Mapping[str, Any], title: str) -> None:
    fpr, tpr = artefacts.get("fpr"), artefacts.get("tpr")
    if fpr is None or tpr is None:
        roc = artefacts.get("roc")
        if isinstance(roc, Mapping):
            fpr, tpr = roc.get("fpr"), roc.get("tpr")
    if fpr is None or tpr is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(list(map(float, fpr)), list(map(float, tpr)))
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"ROC {title}")
    ax.grid(True, alpha=0.3)
    run.save_png(name, fig)
    plt.close(fig)


def save_backbone(run: RunDir, backbone: Any, name: str = "backbone.safetensors") -> Path:
    """The trained backbone alone (a plain state dict; ``facerec.load_weights`` / ``facerun eval`` read it)."""
    return run.save_safetensors(name, backbone.state_dict(), {"format": "pt"})


# --------------------------------------------------------------------------- the entry point
def run_pipeline(*, backbone: str, head: str | None = None, generator: str | None = None,
                 dataset: str | None = None, protocol: Sequence[str] = (), preset: str = "quick",
                 out: str | None = None, seed: int = 0, device: str = "cpu", params: Sequence[str] = (),
                 recipe: str | None = None, stage: str | None = None, resume: bool = False,
                 overwrite: bool = False, resume_option: str | None = "--resume",
                 echo: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Validate, claim the run directory, run the recipe, write config/metrics/summary; return metrics.

    An existing run in ``out`` is continued only with ``resume`` and replaced only with ``overwrite``
    (see :func:`facerec.outputs.claim_run_dir`); ``resume_option`` is how the caller spells resuming."""
    from .outputs import check_writable_dir, claim_run_dir, unclaim_if_untouched

    parsed = parse_params(params)
    for kind, name in (("backbone", backbone), ("head", head), ("generator", generator), ("dataset", dataset)):
        if name:
            registry.find(kind, name)
    chosen = resolve_recipe(recipe, backbone, generator)
    run_path = Path(out) if out else _fresh_run_path()
    check_writable_dir(run_path, "--out")
    if resume and not any((run_path / n).is_file() for n in ("config.json", f"config.{stage}.json")):
        raise FacerecError(f"--resume: {run_path} holds no earlier run (no config.json)")
    config = PipelineConfig(backbone=backbone, head=head, generator=generator, dataset=dataset,
                            protocols=tuple(protocol), preset=preset, seed=seed, device=device, recipe=chosen,
                            stage=stage, resume=resume, out=str(run_path), params=parsed)
    recipe_fn = validate(config)
    created = not run_path.exists()
    claim_run_dir(run_path, stage=stage, resume=resume, overwrite=overwrite, resume_option=resume_option)
    before = set(run_path.rglob("*"))
    run = RunDir(run_path)
    config_file = run.write_json("config.json" if stage is None else f"config.{stage}.json", config.to_dict())
    t0, started = time.perf_counter(), time.time() - 1.0
    try:
        metrics = dict(recipe_fn(config, run) or {})
    except FacerecError:
        if not resume:  # refused before producing anything: leave no run behind to refuse next time
            unclaim_if_untouched(run_path, before, {config_file}, created)
        raise
    metrics.setdefault("seconds", round(time.perf_counter() - t0, 2))
    run.write_json("config.json" if stage is None else f"config.{stage}.json", config.to_dict())  # resolved
    if stage is not None:
        merged = run.read_json("metrics.json", {}) or {}
        merged[stage] = metrics
        run.write_json("metrics.json", merged)
    else:
        run.write_json("metrics.json", metrics)
    summary = run.path / "summary.md"
    if not summary.is_file() or summary.stat().st_mtime < started:
        write_summary(run, config, metrics)
    if echo is not None and _main_process():  # one summary on the terminal under torchrun, not one per rank
        echo(run.headline.rstrip() if run.headline else format_metrics(metrics))
        echo(f"run directory: {run.path}" + (" (all metrics in metrics.json, the report in summary.md)"
                                            if run.headline else ""))
    return metrics


def _fresh_run_path() -> Path:
    """``runs/<time>``, with a counter when a run started in the same second already took it."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def format_metrics(metrics: Mapping[str, Any]) -> str:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    width = max((len(k) for k in flat), default=0)
    return "\n".join(f"{k:<{width}}  {_fmt(v)}" for k, v in flat.items())


def write_summary(run: RunDir, config: PipelineConfig, metrics: Mapping[str, Any],
                  tables: Mapping[str, Sequence[Mapping[str, Any]] | str] | None = None, text: str = "",
                  setup: Sequence[Mapping[str, Any]] | None = None, title: str = "") -> Path:
    """``summary.md``: what was run and the metrics (plus optional tables).

    ``setup`` rows (e.g. one per stage: data, identities, images, steps, image size, wall time) follow
    the run's own setup row; names a recipe resolved (its default dataset and protocols) belong in
    ``config`` before this is called, so that the table never shows "-" for what was used."""
    run_row = [{"backbone": config.backbone, "head": config.head or "-", "generator": config.generator or "-",
                "dataset": config.dataset or "-", "protocols": ", ".join(config.protocols) or "-",
                "recipe": config.recipe + (f" / {config.stage}" if config.stage else ""), "preset": config.preset,
                "seed": config.seed, "device": config.device}]
    flat = [{"metric": k, "value": v} for k, v in metrics.items() if isinstance(v, (int, float)) and
            not isinstance(v, bool)]
    stages = {"Stages": list(setup)} if setup else {}
    all_tables = {"Setup": run_row, **stages, **(tables or {}), "Metrics": flat}
    return run.write_markdown("summary.md", title or f"facerec run {run.path.name}", all_tables, text)



# --------------------------------------------------------------------------- the standard recipe
#: TrainConfig defaults per preset. quick: a couple of CPU minutes; paper: the ArcFace paper's SGD
#: schedule (lr 0.1, momentum 0.9, wd 5e-4, x0.1 at 40/70/90 % of the run, batch 512 scaled down).
STANDARD_TRAIN = {
    # 400 steps: ~80 s on 2 CPU cores, synthetic-pairs accuracy ~0.67 (chance 0.5) with small-cnn
    "quick": {"steps": 400, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
              "schedule": "cosine", "warmup_steps": 20, "log_every": 20},
    "paper": {"epochs": 20, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
              "schedule": "multistep", "milestones": (0.4, 0.7, 0.9), "warmup_steps": 200, "log_every": 50},
}
STANDARD_GENERATOR = {"quick": {"gen_steps": 50, "gen_ids": 16, "gen_per_id": 8},
                      "paper": {"gen_steps": 5000, "gen_ids": 1000, "gen_per_id": 20}}


class LabelledConcat:
    """Two labelled datasets as one: the second's labels are shifted past the first's classes and its
    images resized to the first's size (once, vectorised). Keeps the fast ``batch(indices)`` path."""

    def __init__(self, first: Any, second: Any):
        import torch
        import torch.nn.functional as F

        self.first, self.second = first, second
        self.offset = int(first.num_classes)
        self.num_classes = self.offset + int(second.num_classes)
        probe = first.batch([0])["image"]
        self.size = tuple(probe.shape[-2:])
        data = second.data if getattr(second, "key", "image") == "image" else None
        if data is None:
            raise FacerecError("the standard recipe mixes in generated IMAGES; this generator yields features")
        if tuple(data.shape[-2:]) != self.size:
            data = F.interpolate(data.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        self.images = data.float().clamp(0, 1)
        self.labels2 = second.labels.long() + self.offset
        self._torch = torch

    def __len__(self) -> int:
        return len(self.first) + len(self.labels2)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        torch = self._torch
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        n1 = len(self.first)
        a, b = idx[idx < n1], idx[idx >= n1] - n1
        parts_img, parts_lab = [], []
        if len(a):
            got = self.first.batch(a.tolist())
            parts_img.append(got["image"].float())
            parts_lab.append(torch.as_tensor(got["label"]).long())
        if len(b):
            parts_img.append(self.images[b])
            parts_lab.append(self.labels2[b])
        images, labels = torch.cat(parts_img), torch.cat(parts_lab)
        order = torch.cat([torch.nonzero(idx < n1).squeeze(1), torch.nonzero(idx >= n1).squeeze(1)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return {"image": images[inverse], "label": labels[inverse]}


#: margin-head settings the quick preset uses unless given (s=64, m=0.5 barely moves in a few hundred steps)
QUICK_HEAD = {"s": 30.0, "m": 0.3}
#: protocol parameters the quick preset lowers (only where the protocol has them and the user gave none)
QUICK_PROTOCOL = {"pairs_per_fold": 200}


class CachedDataset:
    """Keeps every sample a fast ``batch(indices)`` dataset produced (as float16, the value it always
    returns, so cached and fresh samples are identical); for small rendered datasets reused each epoch."""

    def __init__(self, inner: Any):
        import torch

        self.inner, self.num_classes = inner, int(inner.num_classes)
        self._images: Any = None
        self._have = torch.zeros(len(inner), dtype=torch.bool)
        self._torch = torch

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def labels(self) -> Any:
        return self.inner.labels

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        torch = self._torch
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        missing = idx[~self._have[idx]].unique()
        if len(missing):
            fresh = self.inner.batch(missing.tolist())
            images = fresh["image"].to(torch.float16)
            if self._images is None:
                self._images = torch.zeros((len(self.inner), *images.shape[1:]), dtype=torch.float16)
                self._labels = torch.full((len(self.inner),), -1, dtype=torch.long)
            self._images[missing] = images
            self._labels[missing] = torch.as_tensor(fresh["label"]).long()
            self._have[missing] = True
        return {"image": self._images[idx].float(), "label": self._labels[idx]}


def maybe_cache(dataset: Any, budget_mb: float = 512.0) -> Any:
    """Wrap a fast-batch dataset in :class:`CachedDataset` when all of it fits in ``budget_mb``."""
    from .engine.classifier import has_fast_batch

    if not has_fast_batch(dataset) or not len(dataset):
        return dataset
    probe = dataset.batch([0]).get("image")
    if probe is None:
        return dataset
    need = len(dataset) * probe[0].numel() * 2 / 2**20
    return CachedDataset(dataset) if need <= budget_mb else dataset


def _quick_backbone_size(config: PipelineConfig) -> dict[str, Any]:
    cls = registry.load("backbone", config.backbone)
    size = getattr(cls, "quick_image_size", None)
    if config.quick and size and "image_size" not in config.kind_params("backbone"):
        return {"image_size": int(size)}
    return {}


def _train_and_eval(config: PipelineConfig, run: RunDir, dataset: Any, protocols: Mapping[str, Any],
                    tcfg: Any, stage: str, knobs: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    from .engine import seed_everything, train_classifier

    seed_everything(config.seed)
    backbone = build_backbone(config, **_quick_backbone_size(config))
    head_cls = registry.load("head", config.head or DEFAULT_HEAD)
    quick = {k: v for k, v in QUICK_HEAD.items() if config.quick and k in registry.parameters(head_cls)}
    head = build_head(config, backbone.embedding_size, int(dataset.num_classes), **quick)
    resume = config.resume and run.checkpoint(stage).is_file()
    # periodic evaluation (train.eval_every > 0) logs every protocol to log.jsonl during training
    result = train_classifier(backbone, head, dataset, tcfg, run_dir=run.path, name=stage,
                              augment=knobs["augment"], resume=run.checkpoint(stage) if resume else None,
                              evaluators=dict(protocols) if tcfg.eval_every else ())
    if not result["finished"]:
        return result, backbone
    result.update(evaluate_protocols(protocols, backbone, device=str(tcfg.device), run=run, tag=f"{stage}-"))
    return result, backbone


def standard_recipe(config: PipelineConfig, run: RunDir) -> dict[str, Any]:
    """Train backbone + margin head on a dataset (default synthetic) and evaluate (default synthetic-pairs);
    with a generator: fit it, sample a set, train with and without it and compare."""
    knobs = config.recipe_params(standard_recipe.params)
    config.head = config.head or DEFAULT_HEAD  # resolved names go to config.json and summary.md
    config.dataset = config.dataset or DEFAULT_DATASET
    config.protocols = config.protocols or (DEFAULT_PROTOCOL,)
    for key, value in STANDARD_GENERATOR[config.preset].items():
        if knobs[key] is None:
            knobs[key] = value
    from .engine import seed_everything

    seed_everything(config.seed)
    probe = build_backbone(config, **_quick_backbone_size(config))
    dataset = maybe_cache(build_dataset(config, probe))
    protocols = {}
    for name in config.protocols or (DEFAULT_PROTOCOL,):
        cls = registry.load("protocol", name)
        extra = {k: v for k, v in QUICK_PROTOCOL.items() if config.quick and k in registry.parameters(cls)
                 and k not in config.kind_params("protocol")}
        protocols[name] = build(config, "protocol", name, image_size=canonical_size(probe), **extra)
    tcfg = train_config(config, STANDARD_TRAIN[config.preset])
    metrics: dict[str, Any] = {}
    if not config.generator:
        result, backbone = _train_and_eval(config, run, dataset, protocols, tcfg, "train", knobs)
        metrics.update(result)
        if result["finished"]:
            save_backbone(run, backbone)
        write_summary(run, config, metrics)
        return metrics
    generator = build_generator(config, probe).to(config.device)
    fit_metrics = generator.fit(dataset, steps=int(knobs["gen_steps"]), batch_size=min(32, tcfg.batch_size),
                                device=config.device, seed=config.seed, progress=True)
    generated = generator.as_dataset(int(knobs["gen_ids"]), int(knobs["gen_per_id"]), seed=config.seed,
                                     device=config.device)
    _save_samples(run, generated)
    mixed = LabelledConcat(dataset, generated)
    rows = []
    for stage, data in (("baseline", dataset), ("with-generated", mixed)):
        result, backbone = _train_and_eval(config, run, data, protocols, tcfg, stage, knobs)
        if result["finished"]:
            save_backbone(run, backbone, f"backbone-{stage}.safetensors")
        metrics[stage] = result
        rows.append({"training data": stage, "samples": len(data), "classes": data.num_classes,
                     **{k: v for k, v in result.items() if "/" in k and not k.startswith("train/")}})
    metrics["generator"] = {k: float(v) for k, v in (fit_metrics or {}).items() if isinstance(v, (int, float))}
    for key in rows[0]:
        if "/" in key and key in rows[1] and isinstance(rows[0][key], float):
            metrics[f"delta/{key}"] = rows[1][key] - rows[0][key]
    write_summary(run, config, {k: v for k, v in metrics.items() if not isinstance(v, dict)},
                  tables={"With and without generated data": rows})
    return metrics


def _save_samples(run: RunDir, generated: Any) -> None:
    images = getattr(generated, "data", None)
    if images is not None and getattr(generated, "key", "") == "image" and images.dim() == 4:
        run.save_png("pictures/generated-samples.png", images[:32].float().clamp(0, 1))


standard_recipe.params = {"gen_steps": None, "gen_ids": None, "gen_per_id": None,  # type: ignore[attr-defined]
                          "augment": "flip"}
standard_recipe.stages = ()  # type: ignore[attr-defined]
standard_recipe.defaults = {"head": DEFAULT_HEAD, "dataset": DEFAULT_DATASET,  # type: ignore[attr-defined]
                            "protocols": (DEFAULT_PROTOCOL,)}

__all__ = ["LabelledConcat", "PipelineConfig", "RunDir", "build", "build_backbone", "build_dataset",
           "build_generator", "build_head", "build_protocols", "canonical_size", "evaluate_protocols",
           "markdown_table", "parse_params", "resolve_recipe", "run_pipeline", "save_backbone",
           "standard_recipe", "train_config", "validate", "write_summary"]
