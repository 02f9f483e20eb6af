"""DCR losses: momentum class centres, the trunk loss and the coupled-mappings (CM) loss.

Formulas from the original (losses/{center_buffer,trunk_loss,cm_loss}.py), re-derived:

* centres move **before** the loss: ``c <- c + alpha * mean_{i: y_i = c}(e_i - c)`` (no gradient);
* trunk loss ``CE(logits, y) + beta * MSE(e, c[y])`` (MSE = mean over all N x D elements);
* CM loss ``mean_b CE_b + lambda_c * mean_b MSE(e_b, c_b[y]) + lambda_d * sum_(h,l) MSE(e_h, e_l)``
  over branches b and coupled (HR, LR) branch pairs, gradients flowing into both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from facerec.api import Head, HeadOutput
from facerec.errors import ParameterError
from torch import Tensor, nn

from .model import PAPER


class CenterBuffer(nn.Module):
    """Class centres kept as a buffer and moved towards each batch's class means (momentum ``alpha``).

    Unlike the original, centres only move in training mode (the original also moved them while
    validating)."""

    def __init__(self, num_classes: int, embedding_size: int, update_factor: float = 0.6):
        super().__init__()
        self.update_factor = update_factor
        self.register_buffer("centers", torch.randn(num_classes, embedding_size) * (2.0 / num_classes) ** 0.5)

    @torch.no_grad()
    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        c = self.centers
        sums = torch.zeros_like(c).index_add_(0, labels, embeddings.detach().to(c.dtype))
        counts = torch.bincount(labels, minlength=c.shape[0]).to(c.dtype)
        present = counts > 0
        means = sums[present] / counts[present, None]
        c[present] += self.update_factor * (means - c[present])
        if dist.is_available() and dist.is_initialized():  # the original averages centres over ranks
            dist.all_reduce(c)
            c /= dist.get_world_size()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Update (in training mode), then ``MSE(e, c[y])`` with the updated centres."""
        if self.training:
            self.update(embeddings, labels)
        return F.mse_loss(embeddings, self.centers[labels])


MINERS = ("none", "batch-hard")
MINING_WITHIN = ("center", "embedding", "none")
TRIPLET_MARGIN = 0.05  # the original's margin of the mined centre loss


def batch_hard(embeddings: Tensor, labels: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The original's BatchHardMiner (pytorch-metric-learning, L2 distance of unit-normalised vectors):
    for each anchor i the farthest reference j != i of its label and the nearest reference of another
    label; anchors with no positive or no negative are left out. Returns (anchor, positive, negative)."""
    with torch.no_grad():
        d = torch.cdist(F.normalize(embeddings.float(), dim=1), F.normalize(reference.float(), dim=1))
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos, neg = same & ~eye, ~same
        hardest_pos = d.masked_fill(~pos, float("-inf")).argmax(1)
        hardest_neg = d.masked_fill(~neg, float("inf")).argmin(1)
        keep = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
    return keep, hardest_pos[keep], hardest_neg[keep]


def _check_choice(value: str, options: tuple[str, ...], name: str) -> str:
    if value not in options:
        raise ParameterError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


class TrunkLoss(nn.Module):
    """Trunk stage: cross-entropy on the trunk logits plus ``center_factor`` x centre loss.

    ``miner="batch-hard"`` (the original's ``--trunkloss-miner BatchHardMiner``) replaces the centre
    loss by ``mean(relu(MSE(e_a, r_p) - MSE(e_a, r_n) + 0.05))`` over batch-hard triplets, with
    references ``r`` the anchors' updated class centres (``mining="center"``), the embeddings
    themselves (``"embedding"``), or no such term (``"none"``): the original's
    ``--trunkloss-miningin``, whose code crashed on an attribute it never set."""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int = 512,
        center_factor: float = 0.008,
        update_factor: float = 0.6,
        miner: str = "none",
        mining: str = "center",
    ):
        super().__init__()
        self.center_factor = center_factor
        self.center = CenterBuffer(num_classes, embedding_size, update_factor)
        self.miner = _check_choice(miner, MINERS, "recipe.trunk_miner")
        self.mining = _check_choice(mining, MINING_WITHIN, "recipe.trunk_mining")

    def forward(self, embeddings: Tensor, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        ce = F.cross_entropy(logits, labels)
        if self.miner == "none":
            center = self.center(embeddings, labels)
        else:
            if self.training:
                self.center.update(embeddings, labels)
            center = self._mined(embeddings, labels)
        out = {"loss": ce + self.center_factor * center, "ce": ce.detach(), "center": center.detach()}
        return out

    def _mined(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self.mining == "none":
            return embeddings.new_zeros(())
        ref = self.center.centers[labels] if self.mining == "center" else embeddings
        a, p, n = batch_hard(embeddings, labels, ref)
        if len(a) == 0:  # no identity twice in the batch (the m-per-class sampler guarantees some)
            return embeddings.new_zeros(())
        pos = (embeddings[a] - ref[p]) ** 2
        neg = (embeddings[a] - ref[n]) ** 2
        return F.relu(pos - neg + TRIPLET_MARGIN).mean()


class CMLoss(nn.Module):
    """Coupled-mappings loss over ``num_branches`` branches with one centre buffer per branch.

    ``pairs`` lists the coupled (HR branch, LR branch) indices: the repository couples branch 0
    to every LR branch, the paper couples one HR/LR pair per resolution."""

    def __init__(
        self,
        num_classes: int,
        num_branches: int,
        pairs: Sequence[tuple[int, int]],
        embedding_size: int = 512,
        center_factor: float = 0.008,
        dist_factor: float = 0.008,
        update_factor: float = 0.6,
        miner: str = "none",
    ):
        super().__init__()
        self.pairs = [tuple(p) for p in pairs]
        self.center_factor = center_factor
        self.dist_factor = dist_factor
        self.centers = nn.ModuleList(
            CenterBuffer(num_classes, embedding_size, update_factor) for _ in range(num_branches)
        )
        self.miner = _check_choice(miner, MINERS, "recipe.branch_miner")

    def _center_term(self, b: int, emb: Tensor, labels: Tensor) -> Tensor:
        if self.miner == "none":
            return self.centers[b](emb, labels)
        # the original's --branchloss-miner: MSE(e_a, c_p) - MSE(e_a, c_n) on batch-hard triplets of the
        # updated centres (no margin, no hinge, as in its code)
        if self.training:
            self.centers[b].update(emb, labels)
        ref = self.centers[b].centers[labels]
        a, p, n = batch_hard(emb, labels, ref)
        if len(a) == 0:
            return emb.new_zeros(())
        return F.mse_loss(emb[a], ref[p]) - F.mse_loss(emb[a], ref[n])

    def forward(
        self, embeddings: Mapping[int, Tensor], logits: Mapping[int, Tensor], labels: Tensor
    ) -> dict[str, Tensor]:
        """``embeddings``/``logits``: branch index -> batch outputs (every branch trained this step)."""
        keys = sorted(embeddings)
        ce = torch.stack([F.cross_entropy(logits[b], labels) for b in keys]).mean()
        center = torch.stack([self._center_term(b, embeddings[b], labels) for b in keys]).mean()
        coupling = sum(
            (
                F.mse_loss(embeddings[hi], embeddings[lo])
                for hi, lo in self.pairs
                if hi in embeddings and lo in embeddings
            ),
            ce.new_zeros(()),
        )
        loss = ce + self.center_factor * center + self.dist_factor * coupling
        return {"loss": loss, "ce": ce.detach(), "center": center.detach(), "coupling": coupling.detach()}


class DCRCenterHead(Head):
    """Softmax (biased linear classifier) plus DCR momentum centre loss, for any backbone."""

    paper = PAPER

    def __init__(self, embedding_size: int, num_classes: int, center_factor: float = 0.008, update_factor: float = 0.6):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)
        self.loss = TrunkLoss(num_classes, embedding_size, center_factor, update_factor)

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        logits = self.fc(embeddings)
        parts = self.loss(embeddings, logits, labels)
        return HeadOutput(loss=parts["loss"], logits=logits, extras={"ce": parts["ce"], "center": parts["center"]})
