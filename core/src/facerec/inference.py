"""Batched embedding of canonical images with any backbone or embedder (inference mode)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from .api import Backbone, Embedder


def as_embedder(model: Backbone | Embedder) -> Embedder:
    """A Backbone embeds through its input spec; any other callable is used as given."""
    return model.embed if isinstance(model, Backbone) else model


@torch.inference_mode()
def embed_batches(model: Backbone | Embedder, batches: Iterable[Tensor], *, device: str = "cpu",
                  flip: bool = False) -> Tensor:
    """Embed canonical image batches ([B,3,H,W] RGB in [0,1]); returns float32 [N, D] on CPU.

    ``flip`` adds the embedding of the mirrored image (the papers' flip test-time augmentation).
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    fn = as_embedder(model)
    out = []
    try:
        for images in batches:
            images = images.to(device, non_blocking=True)
            emb = fn(images).float()
            if flip:
                emb = emb + fn(images.flip(-1)).float()
            out.append(emb.cpu())
    finally:
        if was_training and isinstance(model, torch.nn.Module):
            model.train()
    return torch.cat(out) if out else torch.empty(0, 0)


def embed_tensor(model: Backbone | Embedder, images: Tensor, *, batch_size: int = 64, device: str = "cpu",
                 flip: bool = False) -> Tensor:
    """Embed an in-memory tensor of canonical images in batches."""
    return embed_batches(model, (images[i : i + batch_size] for i in range(0, len(images), batch_size)),
                         device=device, flip=flip)
