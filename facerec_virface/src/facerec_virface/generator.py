"""VirFace's feature generator: a VAE on L2-normalised embeddings (``model/Generator.py``).

en1 (D->256) + ReLU, en_mean / en_var (256->128, en_var is the log-variance), de1 (128->256) + ReLU,
de2 (256->D), no output activation. Runs on any device (the original hard-coded ``.cuda()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import Dataset, GeneratedBatch, Generator

from .checkpoints import convert_part
from .resnet import PAPER


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """``-0.5 * mean(1 + logvar - mean^2 - exp(logvar))``: the MEAN over all elements, as the original."""
    return -0.5 * torch.mean(1 + logvar - mean.pow(2) - logvar.exp())


class VirFaceGenerator(Generator):
    """VirFace VAE feature generator: samples virtual instances around normalised embeddings (output: feature)."""

    output = "feature"
    paper = PAPER
    recipe = "virface"  # `facerun --backbone ANY --generator virface` runs the VirFace recipe

    def __init__(self, embedding_size: int = 512, hidden: int = 256, latent: int = 128):
        super().__init__()
        self.embedding_size = embedding_size
        self.en1 = nn.Linear(embedding_size, hidden)
        self.en_mean = nn.Linear(hidden, latent)
        self.en_var = nn.Linear(hidden, latent)
        self.de1 = nn.Linear(latent, hidden)
        self.de2 = nn.Linear(hidden, embedding_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.en1(x))
        return self.en_mean(h), self.en_var(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.de2(F.relu(self.de1(z)))

    def forward(
        self, x: Tensor, gen_weight: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> (un-normalised reconstruction, mean, logvar); ``gen_weight`` decodes from the mean."""
        mean, logvar = self.encode(x)
        if gen_weight:
            return self.decode(mean), mean, logvar
        return self.decode(self.reparameterise(mean, logvar, generator)), mean, logvar

    @staticmethod
    def reparameterise(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(logvar / 2) * eps

    def augment(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``gen_aug_feat``: encode once, draw k samples -> normalised [k*B, D], chunk i = i-th draw of every row."""
        mean, logvar = self.encode(x)
        z = self.reparameterise(mean.expand(k, *mean.shape), logvar.expand(k, *logvar.shape), generator)
        return F.normalize(self.decode(z.reshape(-1, mean.shape[-1])), dim=1)

    def losses(
        self,
        features: Tensor,
        targets: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(MSE of normalised reconstructions to normalised targets, KL mean, reconstructions) on normalised input."""
        rec, mean, logvar = self(F.normalize(features), generator=generator)
        rec = F.normalize(rec)
        return F.mse_loss(rec, F.normalize(targets)), kl_divergence(mean, logvar), rec

    def fit(
        self,
        dataset: Dataset,
        *,
        steps: int,
        batch_size: int = 32,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        lr: float = 0.1,
        mse_weight: float = 5e3,
        kl_weight: float = 2.0,
        targets: Tensor | None = None,
    ) -> dict[str, float]:
        """Train on a feature dataset (``feature`` + ``label``): reconstructions of normalised features must
        match their class target (``targets[label]``, e.g. the head's class weights; default: class means)."""
        labels = dataset.labels
        feats = torch.stack([dataset[i]["feature"] for i in range(len(dataset))]).float()
        if targets is None:
            n = int(labels.max()) + 1
            targets = torch.zeros(n, feats.shape[1]).index_add_(0, labels, F.normalize(feats))
        self.to(device).train()
        opt = torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        dgen = torch.Generator(device=device).manual_seed(seed) if device != "cpu" else gen
        mse = kl = torch.zeros(())
        for step in range(steps):
            idx = torch.randint(0, len(feats), (min(batch_size, len(feats)),), generator=gen)
            mse, kl, _ = self.losses(feats[idx].to(device), targets[labels[idx]].to(device), generator=dgen)
            loss = mse_weight * mse + kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.eval()
        return {"mse": float(mse.detach()), "kl": float(kl.detach())}

    @torch.no_grad()
    def sample(
        self,
        num_ids: int,
        per_id: int,
        *,
        seed: int = 0,
        device: str = "cpu",
        batch_size: int = 64,
        anchors: Tensor | None = None,
    ) -> Iterator[GeneratedBatch]:
        """Virtual identities: each anchor (given embeddings, else random unit vectors) gets ``per_id``
        generated instances; labels 0..num_ids-1, ``per_id`` rows each, in order."""
        gen = torch.Generator().manual_seed(seed)
        if anchors is None:
            anchors = F.normalize(torch.randn(num_ids, self.embedding_size, generator=gen), dim=1)
        anchors = F.normalize(anchors[:num_ids].float(), dim=1)
        self.to(device).eval()
        per_batch = max(1, batch_size // max(per_id, 1))
        for start in range(0, num_ids, per_batch):
            a = anchors[start : start + per_batch].to(device)
            mean, logvar = self.encode(a)
            eps = torch.randn((len(a), per_id, mean.shape[1]), generator=gen).to(device)
            z = mean[:, None] + torch.exp(logvar / 2)[:, None] * eps
            feats = F.normalize(self.decode(z.reshape(-1, z.shape[-1])), dim=1).cpu()
            labels = torch.arange(start, start + len(a)).repeat_interleave(per_id)
            yield GeneratedBatch(labels=labels, features=feats)

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """A VirFace checkpoint of the generator/virface stage (``generator`` entry, optional ``module.``)."""
        return convert_part(checkpoint, "generator")
