"""Generator ``dvg-neurips``: the DVG (NeurIPS 2019) dual VAE with its losses and sampling.

Two encoders give (mu, logvar) per modality; one decoder renders NIR (channels 0:3) and VIS (3:6)
from cat(z_nir, z_vis). Losses as ``run_train_generator.sh``: reconstruction, KL, the batch-mean
L1 distance the repo calls "MMD" (x50), identity preservation (x1000) and pair distance (x5), with
the non-reconstruction terms scaled by 0.01 during the first epoch. Sampling uses the SAME noise
for both halves, so each NIR/VIS pair shares one identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from facerec.api import Dataset, GeneratedBatch, Generator
from facerec.errors import ParameterError
from torch import Tensor, nn

from .dvg_nets import VAEDecoder, VAEEncoder
from .dvgface import _Progress, face_identity
from .loop_checkpoint import LoopCheckpoint
from .losses import batch_mean_l1, kl_divergence, reparameterize
from .pairs import PairSampler, dataset_modality, fetch_images

PAPER = "Fu, Wu, Hu, Huang, He: Dual Variational Generation for Low-Shot Heterogeneous Face Recognition, NeurIPS 2019"


@attrs.frozen
class VAEWeights:
    """``run_train_generator.sh``: lambda_mmd 50, lambda_ip 1000, lambda_pair 5; warm-up factor 0.01."""

    mmd: float = 50.0
    ip: float = 1000.0
    pair: float = 5.0
    warmup: float = 0.01


class DVGNeurIPS(Generator):
    """DVG (NeurIPS 2019) dual VAE: NIR/VIS encoders, one decoder rendering paired NIR and VIS images."""

    paper: ClassVar[str] = PAPER
    output: ClassVar[str] = "image"
    recipe: ClassVar[str] = "dvg"

    def __init__(
        self,
        hdim: int = 128,
        image_size: int = 128,
        width: float = 1.0,
        face_backbone: str = "lightcnn29",
        face_weights: str | None = None,
        lr: float = 2e-4,
    ):
        super().__init__()
        self.hdim, self.image_size, self.width, self.lr = hdim, image_size, width, lr
        self.encoder_nir = VAEEncoder(hdim, image_size, width)
        self.encoder_vis = VAEEncoder(hdim, image_size, width)
        self.decoder = VAEDecoder(2 * hdim, image_size, width)
        self.weights = VAEWeights()
        self._face: list[nn.Module] = []
        self._face_spec = (face_backbone, face_weights)

    def build_params(self) -> dict[str, Any]:
        """The constructor parameters that shape the networks (stored with saved weights)."""
        return {"hdim": self.hdim, "image_size": self.image_size, "width": self.width}

    def set_face_model(self, face: nn.Module) -> None:
        face.eval().requires_grad_(False)
        self._face = [face]

    @property
    def face(self) -> nn.Module:
        if not self._face:
            import facerec

            name, weights = self._face_spec
            face = facerec.create("backbone", name)
            if weights:
                facerec.load_weights(face, weights)
            self.set_face_model(face)
        return self._face[0]

    def losses(
        self, nir: Tensor, vis: Tensor, warm: bool, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """All terms for one batch; ``warm`` = first epoch (non-reconstruction terms x0.01)."""
        w = self.weights
        mu_n, lv_n = self.encoder_nir(nir)
        mu_v, lv_v = self.encoder_vis(vis)
        z_n, z_v = reparameterize(mu_n, lv_n, generator), reparameterize(mu_v, lv_v, generator)
        rec = self.decoder(torch.cat([z_n, z_v], dim=1))
        rec_nir, rec_vis = rec[:, :3], rec[:, 3:]
        b = len(nir)
        l_rec = (rec - torch.cat([nir, vis], dim=1)).pow(2).flatten(1).sum(1).mean() / 2
        l_kl = (kl_divergence(mu_n, lv_n) + kl_divergence(mu_v, lv_v)) / 2
        l_mmd = w.mmd * batch_mean_l1(z_n, z_v)
        # One face-model call for generated and real images (the real ones are targets only).
        f = face_identity(self.face, torch.cat([rec_nir, rec_vis, nir, vis])).split(b)
        l_ip = w.ip * (F.mse_loss(f[0], f[2].detach()) + F.mse_loss(f[1], f[3].detach())) / 2
        l_pair = w.pair * F.mse_loss(f[0], f[1])
        scale = w.warmup if warm else 1.0
        loss = l_rec + scale * (l_kl + l_mmd + l_ip + l_pair)
        return {"loss": loss, "rec": l_rec, "kl": l_kl, "mmd": l_mmd, "ip": l_ip, "pair": l_pair}

    def fit(
        self,
        dataset: Dataset,
        *,
        steps: int,
        batch_size: int = 8,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        log: list | None = None,
        checkpoint: LoopCheckpoint | None = None,
    ) -> dict[str, float]:
        """Train on paired NIR/VIS images; the first epoch (one pass over the anchors) is the warm-up.
        ``checkpoint``: exact resume and early stop, as :meth:`facerec_dvg.dvgface.DVGFace.fit`."""
        g = torch.Generator().manual_seed(seed)
        sampler = PairSampler(dataset.labels, dataset_modality(dataset))
        self.to(device).train()
        self.face.to(device)
        opt = torch.optim.Adam([p for n, p in self.named_parameters()], lr=self.lr)
        warm_steps = max(1, len(sampler.anchors) // batch_size)
        ckpt = checkpoint or LoopCheckpoint(None)
        start, _, saved = ckpt.restore({"generator": self}, opt, g)
        stats: dict[str, float] = dict(saved.get("stats", {}))
        log = [] if log is None else log  # kept in the checkpoint, so a resumed run has the whole log
        log[:] = list(saved.get("log", []))
        bar = _Progress(progress, steps, "dvg-neurips generator", batch_size)
        end = ckpt.end(steps)
        for step in range(start + 1, end + 1):
            ni, vi, _ = sampler.sample(batch_size, g)
            nir = fetch_images(dataset, ni, self.image_size, device)
            vis = fetch_images(dataset, vi, self.image_size, device)
            terms = self.losses(nir, vis, warm=step <= warm_steps, generator=g)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            stats = {k: float(v.detach()) for k, v in terms.items()}
            log.append({"step": step, **stats})
            bar.update(step, loss=stats["loss"])
            if ckpt.due(step, end):
                ckpt.save(step, {"generator": self}, opt, g, stats=stats, log=log)
        return {**stats, "step": float(max(start, end))}

    @torch.no_grad()
    def sample_pairs(self, n: int, *, generator: torch.Generator, device: str = "cpu") -> tuple[Tensor, Tensor]:
        self.eval().to(device)
        noise = torch.randn(n, self.hdim, generator=generator).to(device)
        fake = self.decoder(torch.cat([noise, noise], dim=1))
        return fake[:, :3], fake[:, 3:]

    @torch.no_grad()
    def sample(
        self, num_ids: int, per_id: int, *, seed: int = 0, device: str = "cpu", batch_size: int = 64
    ) -> Iterator[GeneratedBatch]:
        """One NIR/VIS pair per identity (the VAE has no identity/attribute split): ``per_id`` (images
        per identity, as ``facerun generate --per-id``) must be 2."""
        if per_id != 2:
            raise ParameterError("dvg-neurips draws one NIR/VIS pair (2 images) per identity; use per_id=2")
        g = torch.Generator().manual_seed(seed)
        step = max(1, batch_size // 2)
        for first in range(0, num_ids, step):
            n = min(step, num_ids - first)
            nir, vis = self.sample_pairs(n, generator=g, device=device)
            labels = torch.arange(first, first + n).repeat(2)
            modality = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])
            yield GeneratedBatch(labels=labels, images=torch.cat([nir, vis]).cpu(), modality=modality)
