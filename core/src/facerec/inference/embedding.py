"""Batched embedding of canonical images with any backbone or embedder, in inference mode."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..api import Backbone, Embedder


def as_embedder(model: Backbone | Embedder) -> Embedder:
    """A Backbone embeds through its input spec; any other callable is used as given."""
    return model.embed if isinstance(model, Backbone) else model


@torch.inference_mode()
def embed_batches(
    model: Backbone | Embedder, batches: Iterable[Tensor], *, device: str = "cpu", flip: bool = False
) -> Tensor:
    """Embed canonical image batches ([B,3,H,W] RGB in [0,1]); returns float32 [N, D] on CPU.

    ``flip`` adds the embedding of the mirrored image (the papers' flip test-time augmentation).
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    fn = as_embedder(model)
    fixed = getattr(model, "facerec_batch", None)  # a compiled model runs batches of one size only

    def forward(x: Tensor) -> Tensor:
        if fixed is None:
            return fn(x).float()
        parts = [x[i : i + fixed] for i in range(0, len(x), fixed)]
        return torch.cat([fn(_padded(part, fixed))[: len(part)] for part in parts]).float()

    out = []
    try:
        for images in batches:
            images = images.to(device, non_blocking=True)
            if flip:  # one forward over both halves: better batching than two calls
                both = forward(torch.cat([images, images.flip(-1)]))
                emb = both[: len(images)] + both[len(images) :]
            else:
                emb = forward(images)
            out.append(emb.cpu())
    finally:
        if was_training and isinstance(model, torch.nn.Module):
            model.train()
    return torch.cat(out) if out else torch.empty(0, 0)


def embed_tensor(
    model: Backbone | Embedder, images: Tensor, *, batch_size: int = 64, device: str = "cpu", flip: bool = False
) -> Tensor:
    """Embed an in-memory tensor of canonical images in batches."""
    return embed_batches(
        model, (images[i : i + batch_size] for i in range(0, len(images), batch_size)), device=device, flip=flip
    )


def _padded(images: Tensor, batch: int) -> Tensor:
    if len(images) >= batch:
        return images
    return torch.cat([images, images.new_zeros(batch - len(images), *images.shape[1:])])
