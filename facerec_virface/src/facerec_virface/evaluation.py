"""VirFace's per-epoch verification, two ways: facerec's protocols (10-fold, per-embedding normalisation:
the default) and the repository's own metric as a compatibility option (one best threshold over the whole
set, tried at every score, ``score >= t`` is "same"; features optionally normalised along dim 0 per batch,
the original's batch-dependent ``F.normalize(output, dim=0)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerec import metrics
from facerec.errors import ParameterError


def compat_best_threshold(scores, same) -> metrics.BestThreshold:
    """The original ``base_1v1`` sweep (vectorised in core): best accuracy, its threshold and first index."""
    return metrics.best_threshold_accuracy(scores, same)


def compat_normalise(features: Tensor, batch_size: int) -> Tensor:
    """The original's extract_feature: each feature DIMENSION normalised across every batch of
    ``batch_size`` rows (400 for LFW, 200 for CFP). Only for reproducing the published per-epoch numbers."""
    return torch.cat([F.normalize(chunk, dim=0) for chunk in features.split(batch_size)])


def compat_pair_accuracy(
    emb1: Tensor,
    emb2: Tensor,
    same: Tensor,
    *,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Cosine of each pair (after the original's dim-0 normalisation when ``batch_size`` is given) and the
    single best-threshold accuracy, named as the original logs it."""
    if batch_size:
        both = compat_normalise(torch.cat([emb1, emb2]).float(), batch_size)
        emb1, emb2 = both[: len(emb1)], both[len(emb1) :]
    scores = F.cosine_similarity(emb1.float(), emb2.float(), dim=1)
    best = compat_best_threshold(scores.double().numpy(), same.numpy().astype(bool))
    return {"compat_accuracy": best.accuracy, "compat_threshold": best.threshold}


class CompatPairs:
    """Wraps a pairs protocol: its own metrics (10-fold, per-embedding normalisation) plus the
    repository's ``compat_accuracy``/``compat_threshold`` computed from the same embeddings.

    ``norm_batch`` reproduces the original's ``F.normalize(dim=0)`` over extraction batches of that many
    images (in the protocol's item order); None scores plain cosine."""

    def __init__(self, protocol, norm_batch: int | None = None):
        if not (hasattr(protocol, "items") and hasattr(protocol, "pairs")):
            raise ParameterError(f"recipe.compat_metric needs a pairs protocol, not {type(protocol).__name__}")
        self.protocol, self.norm_batch = protocol, norm_batch
        self.convention = (
            getattr(protocol, "convention", "") + "; compat_*: VirFace single best threshold "
            "over the whole set (score >= t), optimistic"
        )

    def evaluate(self, model, *, device: str = "cpu", batch_size: int = 64, progress: bool = False):
        from facerec.api import EvalResult
        from facerec.inference import as_embedder

        fn = as_embedder(model)
        captured: list[Tensor] = []

        def recording(images: Tensor) -> Tensor:
            emb = fn(images)
            captured.append(emb.detach().float().cpu())
            return emb

        result = self.protocol.evaluate(recording, device=device, batch_size=batch_size, progress=progress)
        keys = self.protocol.items()
        emb = torch.cat(captured) if captured else torch.empty(0)
        if getattr(self.protocol, "flip", False) or len(emb) != len(keys):
            raise ParameterError("recipe.compat_metric needs every pair image present and flip off")
        index = {k: i for i, k in enumerate(keys)}
        pairs = self.protocol.pairs
        left = torch.as_tensor([index[k] for k in pairs.left])
        right = torch.as_tensor([index[k] for k in pairs.right])
        if self.norm_batch:
            emb = compat_normalise(emb, int(self.norm_batch))
        extra = compat_pair_accuracy(emb[left], emb[right], torch.as_tensor(pairs.same))
        return EvalResult({**result.metrics, **extra}, result.artefacts, self.convention)


class RenderedOnce:
    """A synthetic protocol whose images are rendered once and reused for every evaluation (the demo
    evaluates many models on the same pairs). Anything without ``images``/``keys`` is used as it is."""

    def __init__(self, protocol, image_size: int):
        self.protocol = protocol
        self.convention = getattr(protocol, "convention", "")
        self._images: Tensor | None = None
        self._size = int(image_size)

    def evaluate(self, model, *, device: str = "cpu", batch_size: int = 64, progress: bool = False):
        from facerec.inference import embed_tensor

        if self._images is None:
            self._images = torch.cat(
                [
                    self.protocol.images(torch.arange(i, min(i + 256, len(self.protocol))), self._size)
                    for i in range(0, len(self.protocol), 256)
                ]
            )
        feats = embed_tensor(
            model, self._images, batch_size=batch_size, device=device, flip=bool(getattr(self.protocol, "flip", False))
        )
        return self.protocol.evaluate_features(dict(zip(self.protocol.keys, feats)))


def render_once(protocols: dict, image_size: int) -> dict:
    return {
        n: RenderedOnce(p, image_size) if hasattr(p, "images") and hasattr(p, "keys") else p
        for n, p in protocols.items()
    }
