"""Training checkpoints as one safetensors file: modules, optimizer state, grad scaler, RNG states and
step, written atomically (temporary name, then rename). Row-sharded parameters (Partial FC) are gathered
into the full tensor on save and re-sliced for the current ranks on load, so a run can resume with a
different number of processes.

Layout: ``model/<module>/<key>``, ``optim/<module>/<param>/<state>``, ``rng/torch/<rank>``,
``rng/cuda/<rank>``; JSON in the metadata: ``facerec_checkpoint`` (format), ``step``, ``meta``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safetensors import safe_open
from torch import Tensor, nn

from ..errors import FacerecError
from ..fileio import save_safetensors_atomic
from . import distributed as D

FORMAT = "facerec-train-1"


class CheckpointError(FacerecError):
    pass


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete checkpoint temporaries (``.NAME.tmpPID``) that a killed writer left in ``folder``."""
    from ..fileio import remove_stale_temporaries as remove

    return remove(folder)


def _shard_of(param: Tensor) -> tuple[int, int, int] | None:
    return getattr(param, "facerec_shard", None)


def _param_names(modules: Mapping[str, nn.Module]) -> dict[int, tuple[str, str, Tensor]]:
    return {id(p): (m, k, p) for m, mod in modules.items() for k, p in mod.named_parameters()}


def _full(value: Tensor, param: Tensor | None) -> Tensor:
    shard = _shard_of(param) if param is not None else None
    if shard is not None and param is not None and value.dim() >= 1 and value.shape[0] == param.shape[0]:
        value = D.gather_rows(value, shard[2])
    return value.detach().cpu().contiguous().clone()


def _local(value: Tensor, param: Tensor | None, where: str) -> Tensor:
    shard = _shard_of(param) if param is not None else None
    if shard is not None and value.dim() >= 1:
        start, stop, total = shard
        if value.shape[0] != total:
            raise CheckpointError(f"{where}: checkpoint has {value.shape[0]} rows, the model has {total}")
        value = value[start:stop]
    return value


def atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.save_file to a temporary name in the same folder, then rename."""
    save_safetensors_atomic(tensors, path, metadata)


def _gather_rng() -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    out = {}
    for key, state in states.items():
        if D.is_distributed():
            parts = [torch.empty_like(state) for _ in range(D.world_size())]
            import torch.distributed as dist

            dist.all_gather_object(parts, state)
        else:
            parts = [state]
        for r, s in enumerate(parts):
            out[f"rng/{key}/{r}"] = s.cpu().clone()
    return out


def save_checkpoint(
    path: str | Path,
    modules: Mapping[str, nn.Module],
    *,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write a complete training state. Collective under DDP (every rank calls it; rank 0 writes)."""
    tensors: dict[str, Tensor] = {}
    for name, module in modules.items():
        params = dict(module.named_parameters())
        for key, value in module.state_dict().items():
            tensors[f"model/{name}/{key}"] = _full(value, params.get(key))
    extra: dict[str, Any] = {}
    if optimizer is not None:
        names = _param_names(modules)
        for param, state in optimizer.state.items():
            if id(param) not in names:
                continue
            mod, key, _ = names[id(param)]
            for skey, value in state.items():
                if isinstance(value, Tensor):
                    tensors[f"optim/{mod}/{key}/{skey}"] = _full(value, param)
                else:
                    extra.setdefault("optim_scalars", {})[f"{mod}/{key}/{skey}"] = value
    if scaler is not None:
        extra["scaler"] = scaler.state_dict()
    tensors.update(_gather_rng())
    if D.rank() == 0:
        np_state = np.random.get_state()  # the legacy (MT19937) tuple; numpy's stub says a dict when called so
        extra["numpy_rng"] = [np_state[0], np_state[1].tolist(), *np_state[2:]]  # type: ignore[index]
        extra["python_rng"] = _jsonable(random.getstate())
        metadata = {
            "facerec_checkpoint": FORMAT,
            "step": str(int(step)),
            "world_size": str(D.world_size()),
            "meta": json.dumps(dict(meta or {}), default=str),
            "state": json.dumps(extra, default=str),
        }
        atomic_save(tensors, Path(path), metadata)
    D.barrier()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("facerec_checkpoint") != FORMAT:
        raise CheckpointError(f"{path}: not a facerec training checkpoint (format {meta.get('facerec_checkpoint')!r})")
    return meta


def _read(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def module_state(path: str | Path, name: str) -> dict[str, Tensor]:
    """The full state dict of one module (``backbone``, ``head``...) stored in a training checkpoint."""
    read_metadata(path)
    prefix = f"model/{name}/"
    tensors = _read(Path(path))
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        names = sorted({k.split("/")[1] for k in tensors if k.startswith("model/")})
        raise CheckpointError(f"{path}: no module {name!r} (modules: {', '.join(names)})")
    return state


def load_checkpoint(
    path: str | Path,
    modules: Mapping[str, nn.Module],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote (strict); returns ``{"step", "meta", "world_size"}``."""
    path = Path(path)
    meta = read_metadata(path)
    tensors = _read(path)
    for name, module in modules.items():
        prefix = f"model/{name}/"
        params = dict(module.named_parameters())
        state = {
            k[len(prefix) :]: _local(v, params.get(k[len(prefix) :]), f"{path}: {name}.{k[len(prefix) :]}")
            for k, v in tensors.items()
            if k.startswith(prefix)
        }
        own = module.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: module {name!r} does not match the checkpoint "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(
                    f"{path}: {name}.{key} has shape {tuple(value.shape)} in the checkpoint, "
                    f"{tuple(own[key].shape)} in the model"
                )
        module.load_state_dict(state, strict=True)
    extra = json.loads(meta.get("state", "{}"))
    if optimizer is not None:
        scalars = extra.get("optim_scalars", {})
        by_name = {(m, k): p for m, k, p in _param_names(modules).values()}
        optimizer.state.clear()
        for key, value in tensors.items():
            if not key.startswith("optim/"):
                continue
            _, mod, rest = key.split("/", 2)
            pkey, skey = rest.rsplit("/", 1)
            param = by_name.get((mod, pkey))
            if param is None:
                raise CheckpointError(f"{path}: optimizer state for unknown parameter {mod}.{pkey}")
            local = _local(value, param, f"{path}: optimizer {mod}.{pkey}")
            # Adam's 'step' is a CPU scalar tensor; per-parameter buffers live with the parameter.
            optimizer.state[param][skey] = local.to(param.device) if local.dim() > 0 else local
        for key, value in scalars.items():
            mod, rest = key.split("/", 1)
            pkey, skey = rest.rsplit("/", 1)
            if (mod, pkey) in by_name:
                optimizer.state[by_name[(mod, pkey)]][skey] = value
    if scaler is not None and "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    if restore_rng:
        r = D.rank()
        if f"rng/torch/{r}" in tensors:
            torch.set_rng_state(tensors[f"rng/torch/{r}"])
        if f"rng/cuda/{r}" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rng/cuda/{r}"])
        if "numpy_rng" in extra:
            s = extra["numpy_rng"]
            np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), *s[2:]))
        if "python_rng" in extra:
            random.setstate(_tupled(extra["python_rng"]))
    return {
        "step": int(meta["step"]),
        "world_size": int(meta.get("world_size", 1)),
        "meta": json.loads(meta.get("meta", "{}")),
    }


def checkpoint_path(run_dir: str | Path, stage: str, which: str = "last") -> Path:
    """Where the Trainer named ``stage`` keeps its ``which`` (last / best) checkpoint under ``run_dir``:
    ``run_dir/checkpoints/<stage>-<which>.safetensors``, the one layout every command and recipe resumes from."""
    return Path(run_dir) / "checkpoints" / f"{stage}-{which}.safetensors"


__all__ = ["CheckpointError", "checkpoint_path", "save_checkpoint", "load_checkpoint", "read_metadata", "module_state"]
