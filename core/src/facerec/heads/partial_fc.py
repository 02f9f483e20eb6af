"""Partial FC: margin softmax over a sampled subset of class centres, sharded across ranks.

Each rank holds the centres of a contiguous slice of the classes (``facerec.engine.distributed.
shard_range``). Embeddings and labels of the global batch are gathered; each rank scores them against
its sampled centres (all centres of classes present in the batch, plus random others up to
``ceil(sample_rate * local_classes)``); the softmax cross-entropy is computed across ranks without
ever gathering the logits. At ``sample_rate=1`` in one process it equals the plain margin head.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..api import Head, HeadOutput
from ..engine import distributed as D
from .margin import HEAD_RANGES, ArcFaceHead, CombinedMarginHead, CosFaceHead, MarginHead, NormSoftmaxHead

MARGINS = {
    "arcface": ArcFaceHead,
    "cosface": CosFaceHead,
    "combined": CombinedMarginHead,
    "norm-softmax": NormSoftmaxHead,
}


class PartialFCHead(Head):
    """Partial FC (class-centre sampling at rate r) with any margin; one process or sharded across ranks.

    ``margin`` names the margin (arcface, cosface, combined, norm-softmax); ``s``, ``m`` and
    ``m1/m2/m3`` (combined) are passed to it. ``sample_rate`` in (0, 1]. The class centres are split
    across the ranks of the default process group when one exists (the trainer does not wrap this
    head in DDP and gathers/re-slices the shards for checkpoints).
    """

    paper = "An et al., Partial FC: Training 10 Million Identities on a Single Machine, ICCVW 2021"
    param_ranges = {**HEAD_RANGES, "sample_rate": (0, 1)}  # checked before building (facerec.params)
    #: the trainer must not wrap this module in DDP; its row-sharded parameters carry ``facerec_shard``.
    sharded = True

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 0.1,
        margin: str = "arcface",
        s: float = 64.0,
        m: float | None = None,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
    ):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if margin not in MARGINS:
            raise ValueError(f"margin must be one of {', '.join(MARGINS)}, got {margin!r}")
        kwargs: dict = {"s": s}
        if margin in ("arcface", "cosface") and m is not None:
            kwargs["m"] = m
        if margin == "combined":
            kwargs.update(m1=m1, m2=m2, m3=m3)
        margin_head: MarginHead = MARGINS[margin](embedding_size, 1, **kwargs)
        del margin_head.weight  # only its margin function and scale are used
        self.margin_head = margin_head
        self.embedding_size, self.num_classes, self.sample_rate = embedding_size, num_classes, float(sample_rate)
        if num_classes < D.world_size():
            raise ValueError(f"{num_classes} classes cannot be sharded over {D.world_size()} processes")
        # The full matrix is drawn when it is small, so every process count starts from the same centres.
        full = num_classes * embedding_size <= 2**26
        rank, world = D.rank(), D.world_size()
        start, stop = D.shard_range(num_classes, rank, world)
        if full:
            weight = torch.normal(0.0, 0.01, (num_classes, embedding_size))[start:stop].clone()
        else:
            weight = torch.normal(0.0, 0.01, (stop - start, embedding_size))
        self._set_shard(weight, rank, world)

    def _set_shard(self, weight: Tensor, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self.class_start, self.class_stop = D.shard_range(self.num_classes, rank, world)
        self.weight = nn.Parameter(weight)
        self.weight.facerec_shard = (self.class_start, self.class_stop, self.num_classes)  # type: ignore[attr-defined]
        self.num_sample = max(1, math.ceil(self.sample_rate * weight.shape[0]))

    def reshard(self) -> None:
        """Take this process's slice when the process group appeared after construction (the Trainer
        calls this before building the optimizer). Only a full (one-process) head can be re-sliced."""
        rank, world = D.rank(), D.world_size()
        if (rank, world) == (self.rank, self.world):
            return
        if self.world != 1:
            raise RuntimeError(
                f"Partial FC built for {self.world} processes cannot be re-sliced for {world}; "
                "save a checkpoint and load it (checkpoints hold the full matrix)"
            )
        if self.num_classes < world:
            raise ValueError(f"{self.num_classes} classes cannot be sharded over {world} processes")
        start, stop = D.shard_range(self.num_classes, rank, world)
        self._set_shard(self.weight.data[start:stop].clone(), rank, world)

    def _sample(self, local_labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """Indices of the centres used this step (None = all) and the labels remapped to them."""
        local = self.weight.shape[0]
        if not self.training or self.num_sample >= local:
            return None, local_labels
        known = local_labels >= 0
        positive = torch.unique(local_labels[known])
        score = torch.rand(local, device=self.weight.device)
        score[positive] = 2.0  # positives always kept
        count = max(self.num_sample, positive.numel())
        index = torch.topk(score, count).indices.sort().values
        remapped = torch.full_like(local_labels, -1)
        remapped[known] = torch.searchsorted(index, local_labels[known])
        return index, remapped

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        labels = labels.long()
        distributed = self.world > 1
        if distributed:
            embeddings = D.all_gather_rows(embeddings)
            parts = [torch.empty_like(labels) for _ in range(D.world_size())]
            dist.all_gather(parts, labels.contiguous())
            labels = torch.cat(parts)
        inside = (labels >= self.class_start) & (labels < self.class_stop)
        local_labels = torch.where(inside, labels - self.class_start, torch.full_like(labels, -1))
        index, local_labels = self._sample(local_labels)
        weight = self.weight if index is None else self.weight[index]
        cos = self.margin_head.cosine(embeddings, weight)
        logits = self.margin_head.margin_logits(cos, local_labels)
        if not distributed:
            loss = (
                F.cross_entropy(logits, local_labels, ignore_index=-1)
                if (local_labels >= 0).any()
                else logits.sum() * 0.0
            )
            return HeadOutput(loss=loss, logits=logits if index is None else None)
        return HeadOutput(loss=self._distributed_cross_entropy(logits, local_labels, labels >= 0))

    @staticmethod
    def _distributed_cross_entropy(logits: Tensor, local_labels: Tensor, known: Tensor) -> Tensor:
        # log-sum-exp across the class shards of all ranks; the max is a constant (no gradient).
        peak = D.all_reduce_(logits.detach().max(dim=1).values.clone(), "max")
        total = D.all_reduce_sum(torch.exp(logits - peak[:, None]).sum(dim=1))
        mine = local_labels >= 0
        rows = torch.arange(logits.shape[0], device=logits.device)
        target = torch.where(mine, logits[rows, local_labels.clamp_min(0)], torch.zeros_like(peak))
        target = D.all_reduce_sum(target)
        per_row = torch.log(total) + peak - target
        count = known.sum().clamp_min(1)
        return (per_row * known).sum() / count
