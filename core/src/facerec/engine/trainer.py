"""The generic training loop every recipe builds on (see :class:`Trainer`)."""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import FacerecError
from . import distributed as D
from .batches import batch_length, slice_batch, to_device
from .checkpoint import checkpoint_path, load_checkpoint, remove_stale_temporaries, save_checkpoint
from .config import TrainConfig
from .logs import RunLogger
from .optim import build_optimizer, clip_grad_norm, set_lr
from .progress import Progress
from .stopping import TrainingInterrupted, _StopRequest

#: ``loss_fn(batch, modules, step) -> {"loss": Tensor, other logged scalars...}`` (or just the loss).
LossFn = Callable[[Any, Mapping[str, nn.Module], int], "Mapping[str, Tensor] | Tensor"]
#: evaluators: ``step -> {metric: float}`` callables or Protocol objects (evaluated on ``backbone``).
Evaluator = Any


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """The generic loop: optimizer, schedule, AMP, clipping, accumulation, DDP, logs, eval, checkpoints.

    ``modules``: named modules trained together (``{"backbone": ..., "head": ...}``); the one named
    ``backbone`` is what Protocol evaluators evaluate. ``loss_fn(batch, modules, step)`` returns a dict
    with a ``"loss"`` tensor (other entries are averaged and logged) and receives the (DDP-wrapped)
    modules. ``batches``: a callable ``i -> batch`` (``i`` counts micro-batches, so resuming is exact
    and free) or an iterable (re-iterated every epoch; replayed on resume). Batches are GLOBAL batches:
    under DDP each rank takes its contiguous slice unless ``local_batches=True`` (then the callable
    already returns this rank's part, see :func:`facerec.engine.distributed.local_slice`).

    ``param_groups`` maps a module name or a dotted parameter prefix to an lr multiplier (0 freezes);
    ``frozen`` names modules/prefixes to freeze. Norm-layer weights and biases (1-D parameters) get no
    weight decay. ``run_dir`` receives ``log.jsonl`` (records carry ``stage`` = ``name``) and
    ``checkpoints/<name>-{last,best}.safetensors``.
    ``resume``: a checkpoint path, a run directory, or True (= ``run_dir``'s last checkpoint).
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        loss_fn: LossFn,
        batches: Iterable | Callable[[int], Any],
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        param_groups: Mapping[str, float] | None = None,
        frozen: Collection[str] = (),
        evaluators: Sequence[Evaluator] | Mapping[str, Evaluator] = (),
        resume: str | Path | bool | None = None,
        local_batches: bool = False,
        num_samples: int | None = None,
        name: str = "train",
    ):
        self.config = config
        self.name = name
        self.distributed = D.init_from_env(config.device)
        self.rank, self.world = D.rank(), D.world_size()
        self.device = torch.device(D.local_device(config.device))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FacerecError(f"device {config.device!r} requested but CUDA is not available")
        if config.batch_size % (self.world * config.grad_accum):
            raise FacerecError(
                f"train.batch_size {config.batch_size} must be divisible by processes x grad_accum "
                f"({self.world} x {config.grad_accum})"
            )
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None and self.rank == 0:  # a write killed mid-way leaves its temporary
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_stale_temporaries(folder)
        self.loss_fn = loss_fn
        self.batches = batches
        self.local_batches = local_batches
        if num_samples is None and not callable(batches) and hasattr(batches, "__len__"):
            num_samples = len(batches) * config.batch_size  # type: ignore[arg-type]
        self.total = config.total_steps(num_samples) if config.epochs is not None else config.total_steps()
        self.modules: dict[str, nn.Module] = dict(modules)
        for module in self.modules.values():
            for sub in module.modules():
                reshard = getattr(sub, "reshard", None)
                if callable(reshard):
                    reshard()  # sharded heads built before the process group existed
        self.modules = {n: m.to(self.device) for n, m in self.modules.items()}
        lr_table = dict(param_groups or {})
        lr_table.update({k: 0.0 for k in frozen})
        self.optimizer = build_optimizer(self.modules, config, lr_table)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.wrapped = self._wrap()
        self.evaluators: list[tuple[str | None, Evaluator]]
        if isinstance(evaluators, Mapping):
            self.evaluators = list(evaluators.items())
        else:
            self.evaluators = [(None, e) for e in evaluators]
        self.step = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.stopped_early = False
        self.last_metrics: dict[str, float] = {}
        self.eval_metrics: dict[str, float] = {}
        self._iterator: Iterator[Any] | None = None
        seed_everything(config.seed + self.rank)
        if resume:
            self.resume(resume)

    # ----------------------------------------------------------------- setup
    def _wrap(self) -> dict[str, nn.Module]:
        if not self.distributed:
            return dict(self.modules)
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = {}
        for name, module in self.modules.items():
            trainable = any(p.requires_grad for p in module.parameters())
            if getattr(module, "sharded", False) or not trainable:
                wrapped[name] = module  # sharded heads synchronise themselves
                continue
            if self.device.type == "cuda" and self.config.sync_bn:
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
                self.modules[name] = module
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped[name] = DDP(module, device_ids=ids, find_unused_parameters=self.config.find_unused_parameters)
        return wrapped

    # ----------------------------------------------------------------- resume / checkpoints
    def checkpoint_path(self, which: str = "last") -> Path | None:
        """``run_dir/checkpoints/<name>-<which>.safetensors`` (``name`` is the trainer's stage name)."""
        return checkpoint_path(self.run_dir, self.name, which) if self.run_dir is not None else None

    def resume(self, source: str | Path | bool) -> None:
        """Restore modules, optimizer, scaler, RNG states and step from a checkpoint."""
        if source is True:
            path = self.checkpoint_path("last")
            if path is None:
                raise FacerecError("resume=True needs a run_dir")
        else:
            path = Path(source)  # type: ignore[arg-type]
            if path.is_dir():
                path = checkpoint_path(path, self.name)
        if not path.is_file():
            raise FacerecError(f"cannot resume: no checkpoint at {path}")
        info = load_checkpoint(path, self.modules, optimizer=self.optimizer, scaler=self.scaler)
        self.step = info["step"]
        meta = info["meta"]
        self.best = meta.get("best")
        self.bad_evals = int(meta.get("bad_evals", 0))
        self.eval_metrics = dict(meta.get("eval_metrics", {}))

    def save(self, which: str = "last") -> Path | None:
        path = self.checkpoint_path(which)
        if path is None:
            return None
        meta = {
            "best": self.best,
            "bad_evals": self.bad_evals,
            "eval_metrics": self.eval_metrics,
            "total_steps": self.total,
            "config": self.config.to_dict(),
            "name": self.name,
        }
        save_checkpoint(path, self.modules, step=self.step, optimizer=self.optimizer, scaler=self.scaler, meta=meta)
        return path

    # ----------------------------------------------------------------- data
    def _fetch(self, index: int) -> Any:
        if callable(self.batches):
            batch = self.batches(index)
        else:
            if self._iterator is None:
                self._iterator = iter(self.batches)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = iter(self.batches)
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    raise FacerecError("the training batches are empty (or a one-shot iterator ran out)") from None
        if self.distributed and not self.local_batches:
            batch = slice_batch(batch, D.local_slice(batch_length(batch)))
        return to_device(batch, self.device)

    def _skip_to(self, micro: int) -> None:
        # Iterables cannot seek: replay them (callables need nothing).
        if not callable(self.batches):
            for _ in range(micro):
                if self._iterator is None:
                    self._iterator = iter(self.batches)
                try:
                    next(self._iterator)
                except StopIteration:
                    self._iterator = iter(self.batches)
                    next(self._iterator)

    # ----------------------------------------------------------------- the loop
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def train_step(self, step: int) -> tuple[dict[str, Tensor], int]:
        """One optimizer update over ``grad_accum`` micro-batches; returns detached logs and items seen."""
        cfg = self.config
        lr = set_lr(self.optimizer, cfg, step, self.total)
        logs: dict[str, Tensor] = {}
        items = 0
        for micro in range(cfg.grad_accum):
            batch = self._fetch(step * cfg.grad_accum + micro)
            items += batch_length(batch) * (1 if self.local_batches or not self.distributed else self.world)
            last = micro == cfg.grad_accum - 1
            sync = contextlib.ExitStack()
            if self.distributed and not last:
                for m in self.wrapped.values():
                    no_sync = getattr(m, "no_sync", None)
                    if no_sync is not None:
                        sync.enter_context(no_sync())
            with sync:
                with self._autocast():
                    out = self.loss_fn(batch, self.wrapped, step)
                if isinstance(out, Tensor):
                    out = {"loss": out}
                if "loss" not in out:
                    raise FacerecError("loss_fn must return a dict with a 'loss' entry")
                loss = out["loss"].float() / cfg.grad_accum
                self.scaler.scale(loss).backward()
            for key, value in out.items():
                if isinstance(value, Tensor) and value.numel() == 1:
                    v = value.detach().float().reshape(()) / cfg.grad_accum
                    logs[key] = logs[key] + v if key in logs else v
        self.scaler.unscale_(self.optimizer)
        norm = clip_grad_norm(self.optimizer, cfg.grad_clip, self.device)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        logs["lr"] = torch.tensor(lr)
        if norm is not None:
            logs["grad_norm"] = norm.detach()
        return logs, items

    def evaluate(self, step: int | None = None) -> dict[str, float]:
        """Run every evaluator (on rank 0; results broadcast to all ranks); returns flat metrics."""
        step = self.step if step is None else step
        metrics: dict[str, float] = {}
        if self.rank == 0 and self.evaluators:
            modes = {n: m.training for n, m in self.modules.items()}
            for m in self.modules.values():
                m.eval()
            try:
                with torch.no_grad():
                    for name, ev in self.evaluators:
                        if hasattr(ev, "evaluate"):  # a Protocol (or anything protocol-like)
                            if "backbone" not in self.modules:
                                raise FacerecError("Protocol evaluators need a module named 'backbone'")
                            result = ev.evaluate(self.modules["backbone"], device=str(self.device))
                            got = dict(result.metrics)
                            prefix = name or getattr(ev, "name", None) or type(ev).__name__
                        else:
                            got = dict(ev(step))
                            prefix = name
                        for k, v in got.items():
                            metrics[f"{prefix}/{k}" if prefix else k] = float(v)
            finally:
                for n, m in self.modules.items():
                    m.train(modes[n])
        if self.distributed:
            box = [metrics]
            torch.distributed.broadcast_object_list(box, src=0)
            metrics = box[0]
        self.eval_metrics = metrics
        return metrics

    def _early_stopping(self, metrics: Mapping[str, float]) -> bool:
        """Update best / patience; returns True when this evaluation is the best so far."""
        key = self.config.early_stopping_metric
        if not key:
            return False
        if key not in metrics:
            raise FacerecError(
                f"early_stopping_metric {key!r} is not among the evaluated metrics: "
                f"{', '.join(sorted(metrics)) or 'none'}"
            )
        value = metrics[key]
        sign = 1.0 if self.config.early_stopping_mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > 0:
            self.best, self.bad_evals = value, 0
            return True
        self.bad_evals += 1
        if self.config.early_stopping_patience and self.bad_evals >= self.config.early_stopping_patience:
            self.stopped_early = True
        return False

    def _stop_signal(self, request: _StopRequest) -> int | None:
        """The signal that asked to stop (agreed by every rank under DDP, so all save together)."""
        if not self.distributed:
            return request.signum
        flag = torch.tensor([float(request.signum or 0)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        request.signum = int(flag.item()) or None
        return request.signum

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train to the end (or to step ``until`` / ``config.stop_at``, as if interrupted) and return
        the final metrics: ``step``, the last logged training values, evaluation metrics, ``items_per_s``."""
        cfg = self.config
        stop = min([self.total, *(s for s in (until, cfg.stop_at) if s is not None)])
        logger = RunLogger(self.run_dir, enabled=self.rank == 0, stage=self.name)
        progress = Progress(self.total, desc=self.name, enabled=cfg.progress and self.rank == 0, start=self.step)
        self._skip_to(self.step * cfg.grad_accum)
        for m in self.modules.values():
            m.train()
        pending: dict[str, list[Tensor]] = defaultdict(list)
        window_items, window_t0 = 0, time.perf_counter()
        evaluated_at = -1
        t_start = time.perf_counter()
        request = _StopRequest().__enter__()  # SIGTERM / Ctrl-C: finish the step, checkpoint, stop
        try:
            while self.step < stop and not self.stopped_early:
                logs, items = self.train_step(self.step)
                self.step += 1
                window_items += items
                for k, v in logs.items():
                    pending[k].append(v)
                log_now = (cfg.log_every and self.step % cfg.log_every == 0) or self.step == stop
                if log_now:
                    values = {k: float(torch.stack(v).mean()) for k, v in pending.items()}
                    if not all(math.isfinite(values.get(k, 0.0)) for k in ("loss",)):
                        raise FacerecError(
                            f"training diverged at step {self.step}: loss is {values['loss']}"
                            " (lower train.lr, set train.grad_clip, or turn off amp)"
                        )
                    elapsed = time.perf_counter() - window_t0
                    values["items_per_s"] = window_items / elapsed if elapsed > 0 else 0.0
                    self.last_metrics = values
                    logger.log(self.step, values)
                    progress.update(
                        self.step, window_items, {k: v for k, v in values.items() if k in ("loss", "acc", "lr")}
                    )
                    pending.clear()
                    window_items, window_t0 = 0, time.perf_counter()
                if self.evaluators and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.total:
                    metrics = self.evaluate()
                    evaluated_at = self.step
                    logger.log(self.step, metrics, kind="eval")
                    progress.note(self.step, metrics)
                    if self._early_stopping(metrics):
                        self.save("best")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last")
                if self._stop_signal(request) is not None:
                    path = self.save("last")
                    progress.close()
                    logger.close()
                    name = signal.Signals(request.signum).name if request.signum else "a signal"
                    raise TrainingInterrupted(
                        f"{self.name}: stopped by {name} at step {self.step} of {self.total}; "
                        + (f"checkpoint saved to {path} (continue with --resume)" if path else "no run_dir to save to"),
                        request.signum or signal.SIGTERM,
                    )
        finally:
            request.__exit__()
        finished = self.step >= self.total or self.stopped_early
        if finished and self.evaluators and evaluated_at != self.step:
            metrics = self.evaluate()
            logger.log(self.step, metrics, kind="eval")
            progress.note(self.step, metrics)
            if self._early_stopping(metrics):
                self.save("best")
        self.save("last")
        progress.close()
        logger.close()
        duration = time.perf_counter() - t_start
        result: dict[str, Any] = {
            "step": self.step,
            "total_steps": self.total,
            "finished": finished,
            "stopped_early": self.stopped_early,
            "train_seconds": round(duration, 3),
        }
        result.update({f"train/{k}": v for k, v in self.last_metrics.items()})
        result.update(self.eval_metrics)
        if self.best is not None:
            result["best"] = self.best
        return result


__all__ = ["Trainer", "TrainingInterrupted", "seed_everything"]
