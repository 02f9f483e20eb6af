"""TemplateRank1: a closed-set identification protocol on core's synthetic faces."""

from __future__ import annotations

import torch

from facerec.api import Backbone, Embedder, EvalResult, Protocol
from facerec.data.synthetic import render
from facerec.inference import embed_tensor
from facerec.metrics import rank_k


class TemplateRank1(Protocol):
    """Rank-1 of one probe per identity against a one-image-per-identity synthetic gallery."""

    convention = "closed set; cosine similarity; gallery sample 0, probe sample 1 of each identity"
    paper = "facerec plugin template (no paper)"

    def __init__(self, num_ids: int = 50, image_size: int = 112, seed: int = 0):
        if num_ids < 2:
            raise ValueError(f"num_ids must be at least 2, got {num_ids}")
        self.num_ids, self.image_size, self.seed = num_ids, image_size, seed

    def evaluate(
        self, model: Backbone | Embedder, *, device: str = "cpu", batch_size: int = 64, progress: bool = False
    ) -> EvalResult:
        ids = torch.arange(self.num_ids) + 2_000_000  # disjoint from any training identities
        gallery = render(ids, torch.zeros_like(ids), seed=self.seed, size=self.image_size)
        probe = render(ids, torch.ones_like(ids), seed=self.seed, size=self.image_size)
        g = embed_tensor(model, gallery, batch_size=batch_size, device=device)
        p = embed_tensor(model, probe, batch_size=batch_size, device=device)
        rank1 = rank_k(g, ids, p, ids, ks=(1,))[1]
        return EvalResult(metrics={"rank1": float(rank1)}, convention=self.convention)
