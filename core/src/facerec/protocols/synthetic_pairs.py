"""Synthetic verification protocols: ``synthetic-pairs`` (LFW-like) and ``synthetic-pose-pairs``
(CFP-FP-like frontal against profile)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import metrics
from ..api import EvalResult
from ..data.synthetic import rng as _rng
from ..data.synthetic_datasets import PROTOCOL_ID_OFFSET
from ..errors import ParameterError
from .synthetic_base import _cat, _check_int, _plan, _SyntheticProtocol, _unique_plan


class SyntheticPairs(_SyntheticProtocol):
    """LFW-like verification on synthetic identities: 10 folds x 600 pairs (half same, half different).

    Folds use disjoint identities. In a fold, identity j gives the same-pair (j/0, j/1); the
    different-pairs match (j/2) with (pi(j)/3), pi a random derangement within the fold. Accuracy is
    the 10-fold mean (threshold chosen on the other nine folds), std over folds with ddof=0.
    """

    convention = "10-fold verification accuracy, cosine similarity, threshold from the 9 other folds (LFW)"

    def __init__(
        self,
        num_folds: int = 10,
        pairs_per_fold: int = 600,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        super().__init__(image_size, seed, id_offset, flip, nuisance)
        self.num_folds = _check_int(type(self).__name__, "num_folds", num_folds, 2)
        self.pairs_per_fold = _check_int(type(self).__name__, "pairs_per_fold", pairs_per_fold, 4)
        if self.pairs_per_fold % 2:
            raise ParameterError(f"{type(self).__name__}: pairs_per_fold must be even, got {pairs_per_fold}")

    def _pairs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(identities and samples of each pair's first image, of its second, same flags)."""
        half = self.pairs_per_fold // 2
        g = torch.Generator().manual_seed(self.seed * 7919 + 17)
        ids = self.id_offset + torch.arange(self.num_folds * half).view(self.num_folds, half)
        shift = (
            torch.randint(1, half, (self.num_folds, 1), generator=g)
            if half > 1
            else torch.zeros(self.num_folds, 1, dtype=torch.long)
        )
        perm = (torch.arange(half).view(1, -1) + shift) % half
        other = torch.gather(ids, 1, perm)
        zeros = torch.zeros_like(ids)
        a_id = torch.cat([ids, ids], 1).view(-1)
        b_id = torch.cat([ids, other], 1).view(-1)
        a_s = torch.cat([zeros, zeros + 2], 1).view(-1)
        b_s = torch.cat([zeros + 1, zeros + 3], 1).view(-1)
        same = torch.cat([torch.ones_like(ids), zeros], 1).view(-1).bool()
        return a_id, a_s, b_id, b_s, same

    def _pair_plan(self) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        a_id, a_s, b_id, b_s, same = self._pairs()
        full = _cat(
            [
                _plan(a_id, a_s, **self._extra(a_id, a_s, first=True)),
                _plan(b_id, b_s, **self._extra(b_id, b_s, first=False)),
            ]
        )
        plan, inverse = _unique_plan(full)
        n = len(a_id)
        return plan, inverse[:n], inverse[n:], same

    def _extra(self, ids: Tensor, samples: Tensor, first: bool) -> dict[str, Any]:
        return {}

    def _build(self) -> dict[str, Tensor]:
        plan, self._ia, self._ib, self._same = self._pair_plan()
        return plan

    @property
    def pairs(self) -> tuple[Tensor, Tensor, Tensor]:
        """(row of the first image, row of the second image, same-identity flag) per pair, in fold order."""
        _ = self.plan
        return self._ia, self._ib, self._same

    def _score(self, feats: Tensor) -> EvalResult:
        _ = self.plan
        f = torch.nn.functional.normalize(feats.float(), dim=1)
        scores = (f[self._ia] * f[self._ib]).sum(1).numpy()
        same = self._same.numpy()
        kf = metrics.kfold_accuracy(scores, same, n_folds=self.num_folds)
        out = {
            "accuracy": float(kf.mean),
            "accuracy_std": float(kf.std),
            "auc": float(metrics.auc(scores, same)),
            "eer": float(metrics.eer(scores, same)),
        }
        return EvalResult(
            metrics=out,
            convention=self.convention,
            artefacts={
                "fold_accuracy": kf.fold_accuracy,
                "fold_threshold": kf.fold_threshold,
                "scores": scores,
                "same": same,
            },
        )


class SyntheticPosePairs(SyntheticPairs):
    """CFP-FP-like frontal-profile verification: 10 folds x 700 pairs, the first image of each pair
    near-frontal (|yaw| <= 10 degrees), the second a profile (65-90 degrees, either side)."""

    convention = "10-fold verification accuracy, frontal vs profile pairs (CFP-FP), cosine similarity"

    def __init__(
        self,
        num_folds: int = 10,
        pairs_per_fold: int = 700,
        image_size: int | None = None,
        seed: int = 0,
        id_offset: int = PROTOCOL_ID_OFFSET + 200_000,
        flip: bool = False,
        nuisance: str | dict | None = None,
    ):
        super().__init__(num_folds, pairs_per_fold, image_size, seed, id_offset, flip, nuisance)

    def _extra(self, ids: Tensor, samples: Tensor, first: bool) -> dict[str, Any]:
        u = _rng.uniform(_rng.item_keys(self.seed, ids, samples, salt=11), 2)
        if first:
            yaw = (u[:, 0] * 2 - 1) * 10
        else:
            yaw = (65 + 25 * u[:, 0]) * torch.where(u[:, 1] < 0.5, -1.0, 1.0)
        return {"yaw": yaw}

    def _pairs(self):
        a_id, a_s, b_id, b_s, same = super()._pairs()
        return a_id, a_s, b_id, b_s + 100, same  # profile samples are distinct items from frontal ones
