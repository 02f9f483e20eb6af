"""The optimizer the Trainer steps: parameter groups with lr multipliers and no weight decay on 1-D
parameters, the learning rate of a step, and global gradient-norm clipping across sharded heads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..errors import FacerecError
from . import distributed as D
from .config import TrainConfig
from .schedules import lr_factor


def _lookup(table: Mapping[str, float], name: str, default: float = 1.0) -> float:
    """Longest matching dotted prefix (``backbone`` matches ``backbone.fc.weight``)."""
    best, value = -1, default
    for key, mult in table.items():
        if (name == key or name.startswith(key + ".")) and len(key) > best:
            best, value = len(key), float(mult)
    return value


def build_optimizer(
    modules: Mapping[str, nn.Module], cfg: TrainConfig, lr_table: Mapping[str, float]
) -> torch.optim.Optimizer:
    """``cfg``'s optimizer over every trainable parameter of ``modules``; ``lr_table`` maps a module name or
    dotted parameter prefix to an lr multiplier (0 freezes the parameter)."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = defaultdict(list)
    for mname, module in modules.items():
        for pname, p in module.named_parameters():
            if not p.requires_grad:
                continue
            mult = _lookup(lr_table, f"{mname}.{pname}")
            if mult == 0.0:
                p.requires_grad_(False)
                continue
            decay = p.dim() > 1 and not getattr(p, "facerec_no_decay", False)
            groups[(mult, decay)].append(p)
    if not groups:
        raise FacerecError("nothing to train: every parameter is frozen")
    param_groups = [
        {"params": ps, "lr_mult": mult, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": cfg.lr * mult}
        for (mult, decay), ps in groups.items()
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas)


def set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int, total: int) -> float:
    """Set every group's lr for optimizer step ``step`` of ``total`` (its multiplier times the schedule);
    returns the base lr of that step."""
    factor = lr_factor(cfg, step, total)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * group["lr_mult"] * factor
    return cfg.lr * factor


def clip_grad_norm(optimizer: torch.optim.Optimizer, max_norm: float, device: torch.device) -> Tensor | None:
    """Scale the gradients to a global norm of at most ``max_norm`` (None when 0: no clipping); returns
    the norm before clipping. Sharded parameters (``facerec_shard``) add their squares across ranks."""
    if not max_norm:
        return None
    shared: list[Tensor] = []
    sharded: list[Tensor] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                (sharded if hasattr(p, "facerec_shard") else shared).append(p.grad)
    zero = torch.zeros((), device=device)
    sq = torch.stack([g.float().pow(2).sum() for g in shared]).sum() if shared else zero
    sq_sharded = torch.stack([g.float().pow(2).sum() for g in sharded]).sum() if sharded else zero.clone()
    D.all_reduce_(sq_sharded)
    norm = (sq + sq_sharded).sqrt()
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in shared + sharded:
        g.mul_(coef.to(g.dtype))
    return norm
