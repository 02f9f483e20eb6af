"""torch.distributed helpers: process-group setup from torchrun's environment, shard ranges, and the
autograd-aware collectives Partial FC needs. A single process never creates a process group."""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 of a process group, else the process torchrun started as RANK 0 (or no torchrun at all):
    the one process that prints summaries and writes reports. Works before the group exists."""
    if is_distributed():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def init_from_env(device: str = "cpu", timeout_s: float = 600.0) -> bool:
    """Create the default process group when launched by torchrun with WORLD_SIZE > 1.

    gloo on CPU, nccl on CUDA. Returns True when running distributed. Idempotent.
    """
    if env_world_size() <= 1:
        return is_distributed()
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(_destroy_at_exit)
    return is_distributed()


def _destroy_at_exit() -> None:
    """Tear the process group down while the interpreter is still whole: left to finalisation, gloo's
    worker threads can abort the process (SIGABRT) after a run that otherwise succeeded."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # exiting anyway; a failed teardown must not hide the run's own result
            pass


def local_device(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; anything else is returned unchanged."""
    if device == "cuda" and env_world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard_range(total: int, rank_: int, world: int) -> tuple[int, int]:
    """Contiguous near-equal split of ``range(total)``: the first ``total % world`` ranks get one more."""
    base, extra = divmod(total, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def local_slice(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """The rows of a global batch of ``n`` that this rank processes (``n`` must divide evenly)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if n % w:
        raise ValueError(f"global batch size {n} is not divisible by the number of processes {w}")
    per = n // w
    return slice(r * per, (r + 1) * per)


def all_reduce_(tensor: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce (no-op in one process); gloo lacks some dtypes, so reduce in float32/64."""
    if is_distributed():
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def gather_rows(tensor: Tensor, total: int) -> Tensor:
    """Concatenate every rank's row shard (sizes from :func:`shard_range`) into the full tensor."""
    if not is_distributed():
        return tensor
    w = world_size()
    sizes = [b - a for a, b in (shard_range(total, r, w) for r in range(w))]
    rows = max(sizes)
    padded = tensor.new_zeros((rows, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _AllGatherRows(torch.autograd.Function):
    """all_gather along dim 0. Backward sums every rank's gradient for our rows and multiplies by the
    world size: each rank's loss is the GLOBAL mean, and DDP averages backbone gradients afterwards."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        w = dist.get_world_size()
        ctx.rows, ctx.rank, ctx.world = tensor.shape[0], dist.get_rank(), w
        parts = [torch.empty_like(tensor) for _ in range(w)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows] * ctx.world


class _AllReduceSum(torch.autograd.Function):
    """Sum across ranks; the backward passes the gradient through unchanged (every rank computes the
    same global loss, so each rank's partial sum receives exactly the upstream gradient)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def all_gather_rows(tensor: Tensor) -> Tensor:
    """Differentiable all_gather of equal-sized row blocks (identity in one process)."""
    return _AllGatherRows.apply(tensor) if is_distributed() else tensor


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Differentiable sum across ranks with pass-through backward (identity in one process)."""
    return _AllReduceSum.apply(tensor) if is_distributed() else tensor


__all__ = [
    "env_world_size",
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "init_from_env",
    "local_device",
    "barrier",
    "shard_range",
    "local_slice",
    "all_reduce_",
    "gather_rows",
    "all_gather_rows",
    "all_reduce_sum",
]
