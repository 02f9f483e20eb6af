"""TrainConfig: every knob of the training loop, validated, with overrides parsed from strings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..errors import ParameterError

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("constant", "step", "multistep", "cosine", "poly")
AMP_MODES = ("off", "bf16", "fp16")
MODES = ("max", "min")


def _choice(options: tuple[str, ...]):
    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in options:
            raise ParameterError(f"train.{attribute.name} must be one of {', '.join(options)}, got {value!r}")

    return check


def _positive(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ParameterError(f"train.{attribute.name} must be positive, got {value!r}")


def _non_negative(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ParameterError(f"train.{attribute.name} must be >= 0, got {value!r}")


def _milestones(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),)
    return tuple(float(v) for v in value)


@attrs.define(kw_only=True)
class TrainConfig:
    """Settings of :class:`facerec.engine.Trainer`. Steps count optimizer updates.

    ``steps`` or ``epochs`` (epochs need the number of samples: ``total_steps(n)``). ``batch_size``
    is the GLOBAL batch (split over DDP processes, accumulated over ``grad_accum`` micro-batches).
    Schedules: ``constant``, ``step`` (x ``gamma`` every ``step_size`` steps), ``multistep``
    (x ``gamma`` at each of ``milestones``; values < 1 are fractions of the run), ``cosine`` (to
    ``min_lr``), ``poly`` (``power``), each after ``warmup_steps`` of linear warm-up. ``amp``:
    ``bf16`` or ``fp16`` autocast (fp16 uses a gradient scaler). ``grad_clip``: max global grad norm
    (0 = off). ``eval_every``/``checkpoint_every``/``log_every`` in steps (0 = only at the end).
    Early stopping stops after ``patience`` evaluations without improvement of ``early_stopping_metric``.
    ``stop_at`` ends the run early as if interrupted (for resuming later with the same schedule).
    """

    steps: int | None = attrs.field(default=None, validator=_positive)
    epochs: float | None = attrs.field(default=None, validator=_positive)
    batch_size: int = attrs.field(default=64, validator=_positive)
    lr: float = attrs.field(default=0.1, validator=_non_negative)
    momentum: float = attrs.field(default=0.9, validator=_non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=_non_negative)
    optimizer: str = attrs.field(default="sgd", validator=_choice(OPTIMIZERS))
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple)
    nesterov: bool = False
    schedule: str = attrs.field(default="constant", validator=_choice(SCHEDULES))
    milestones: tuple[float, ...] = attrs.field(default=(), converter=_milestones)
    gamma: float = attrs.field(default=0.1, validator=_positive)
    step_size: int = attrs.field(default=1000, validator=_positive)
    power: float = attrs.field(default=1.0, validator=_positive)
    min_lr: float = attrs.field(default=0.0, validator=_non_negative)
    warmup_steps: int = attrs.field(default=0, validator=_non_negative)
    amp: str = attrs.field(
        default="off", converter=lambda v: "off" if v is False or v is None else v, validator=_choice(AMP_MODES)
    )  # --param train.amp=off parses as False
    grad_clip: float = attrs.field(default=0.0, validator=_non_negative)
    grad_accum: int = attrs.field(default=1, validator=_positive)
    seed: int = 0
    device: str = "cpu"
    log_every: int = attrs.field(default=10, validator=_non_negative)
    eval_every: int = attrs.field(default=0, validator=_non_negative)
    early_stopping_patience: int = attrs.field(default=0, validator=_non_negative)
    early_stopping_metric: str = ""
    early_stopping_mode: str = attrs.field(default="max", validator=_choice(MODES))
    checkpoint_every: int = attrs.field(default=0, validator=_non_negative)
    num_workers: int = attrs.field(default=0, validator=_non_negative)
    progress: bool = True
    find_unused_parameters: bool = False
    sync_bn: bool = True
    stop_at: int | None = attrs.field(default=None, validator=_positive)

    #: declared ranges (facerec.params), checked for every --param train.* / --lr / --steps before any work
    param_ranges: ClassVar[dict[str, tuple[Any, Any]]] = {
        "steps": (1, 10**9),
        "epochs": (None, 10**6),
        "batch_size": (1, 2**20),
        "lr": (0, 100),
        "momentum": (0, 1),
        "weight_decay": (0, 1),
        "min_lr": (0, 100),
        "warmup_steps": (0, 10**9),
        "grad_clip": (0, None),
        "grad_accum": (1, 2**16),
        "log_every": (0, 10**9),
        "eval_every": (0, 10**9),
        "checkpoint_every": (0, 10**9),
        "num_workers": (0, 1024),
        "stop_at": (1, 10**9),
        "step_size": (1, 10**9),
        "early_stopping_patience": (0, 10**9),
    }

    def __attrs_post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            self.steps = 1000
        if self.batch_size % self.grad_accum:
            raise ParameterError(
                f"train.batch_size {self.batch_size} is not divisible by train.grad_accum {self.grad_accum}"
            )

    def total_steps(self, num_samples: int | None = None) -> int:
        """Number of optimizer steps: ``steps``, or ``epochs`` over ``num_samples`` samples."""
        if self.epochs is not None and (self.steps is None or num_samples is not None):
            if num_samples is None:
                raise ParameterError("train.epochs needs a dataset with a length; give train.steps instead")
            return max(1, math.ceil(self.epochs * num_samples / self.batch_size))
        assert self.steps is not None
        return int(self.steps)

    def evolve(self, **changes: Any) -> TrainConfig:
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in attrs.fields(cls))

    def with_overrides(self, overrides: Mapping[str, Any], *, prefix: str = "train.") -> TrainConfig:
        """Apply ``{name: value}`` overrides; unknown names are refused with the list of known ones."""
        names = self.field_names()
        for key in overrides:
            if key not in names:
                import difflib

                close = difflib.get_close_matches(key, names, n=3)
                hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
                raise ParameterError(f"unknown training option {prefix}{key}{hint}; known: {', '.join(names)}")
        changes = dict(overrides)
        # The run length given here replaces the one set before (a recipe's preset): explicit steps win
        # over preset epochs and explicit epochs over preset steps. Both at once would be ambiguous.
        if changes.get("steps") is not None and changes.get("epochs") is not None:
            raise ParameterError(
                f"give {prefix}steps or {prefix}epochs, not both "
                f"(got steps={changes['steps']!r}, epochs={changes['epochs']!r})"
            )
        if changes.get("epochs") is not None:
            changes["steps"] = None
        elif changes.get("steps") is not None:
            changes["epochs"] = None
        try:
            return attrs.evolve(self, **changes)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ParameterError):
                raise
            raise ParameterError(f"bad training option: {exc}") from exc
