"""Generator ``dvg``: the DVG-Face dual generator (TPAMI 2021) with its training and sampling.

Training follows the released ``train_generator.py``: a frozen face model (LightCNN-29 v2 upstream,
any facerec backbone here) and a frozen identity sampler; per step the identity comes from the VIS
image, the attribute codes from both images; losses ``L_ort + L_pix + L_ip`` with the released
weights. The step renders all six decoder outputs in ONE decoder call and embeds the four
generated images in ONE face-model call (the original makes 6 and 5 calls); ``original_step``
keeps the original call structure for the benchmark and the equivalence test.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from facerec.api import Dataset, GeneratedBatch, Generator
from facerec.errors import FacerecError, ParameterError
from torch import Tensor, nn

from .checkpoints import load_original
from .loop_checkpoint import LoopCheckpoint
from .dvgface_nets import Decoder, Encoder, IdentityEncoder, IdentitySampler
from .losses import ang_loss, derangement, kl_divergence, ort_loss, reparameterize
from .pairs import PairSampler, dataset_modality, fetch_images

PAPER = "Fu, Wu, Hu, Huang, He: DVG-Face: Dual Variational Generation for Heterogeneous Face Recognition, TPAMI 2021"
#: On CPU the decoder runs 1.4-1.65x faster per image in slices of 8 than in one call of 64-128
#: (its 64-128 px feature maps then stay in cache; measured at 64 px width 0.5 and 128 px width 1).
CPU_SLICE_ROWS = 8


def cpu_slices(fn, *tensors: Tensor) -> Tensor:
    """``fn(*tensors)`` batched as given on GPU, in slices of ``CPU_SLICE_ROWS`` rows on CPU. Only for nets
    whose output per sample does not depend on the rest of the batch (instance norm / AdaIN, eval-mode BN)."""
    n, c = len(tensors[0]), CPU_SLICE_ROWS
    if tensors[0].device.type != "cpu" or n <= c:
        return fn(*tensors)
    return torch.cat([fn(*(t[i : i + c] for t in tensors)) for i in range(0, n, c)])


def face_identity(face: nn.Module, images: Tensor) -> Tensor:
    """Unit-norm identity of canonical images with a frozen face model (no resize+crop when the
    images already have the network size: the original feeds the 128x128 images directly)."""
    spec = attrs.evolve(face.input_spec, resize=None)
    return F.normalize(face(spec.prepare(images)), dim=1)


@attrs.frozen
class LossWeights:
    """The released code's hard-coded weights."""

    ort: float = 50.0
    pix: float = 100.0
    pix_idx: float = 0.1
    pix_fake: float = 0.1
    ip: float = 0.1
    ip_pair: float = 0.05


@attrs.frozen
class StepOutput:
    loss: Tensor
    ort: Tensor
    pix: Tensor
    ip: Tensor
    images: dict[str, Tensor]


def _losses(
    w: LossWeights,
    nir: Tensor,
    vis: Tensor,
    id_vis: Tensor,
    id_noise: Tensor,
    z_n: Tensor,
    z_v: Tensor,
    out: dict[str, Tensor],
    f: dict[str, Tensor],
) -> StepOutput:
    l_ort = w.ort * (ort_loss(z_n, id_vis) + ort_loss(z_v, id_vis))
    l1 = F.l1_loss
    l_pix = w.pix * (
        l1(out["rec_nir"], nir)
        + l1(out["rec_vis"], vis)
        + w.pix_idx * (l1(out["rec_nir_idx"], nir) + l1(out["rec_vis_idx"], vis))
        + w.pix_fake * (l1(out["fake_nir"], nir) + l1(out["fake_vis"], vis))
    )
    l_ip = -w.ip * (
        ang_loss(f["rec_nir"], id_vis)
        + ang_loss(f["rec_vis"], id_vis)
        + w.ip_pair * ang_loss(f["rec_nir"], f["rec_vis"])
        + ang_loss(f["fake_nir"], id_noise)
        + ang_loss(f["fake_vis"], id_noise)
        + w.ip_pair * ang_loss(f["fake_nir"], f["fake_vis"])
    )
    return StepOutput(loss=l_ort + l_pix + l_ip, ort=l_ort, pix=l_pix, ip=l_ip, images=out)


def _pairs_per_id(per_id: int) -> int:
    """NIR/VIS pairs that make ``per_id`` images of one identity."""
    if per_id < 2 or per_id % 2:
        raise ParameterError(f"per_id must be an even number of images (NIR/VIS pairs), got {per_id}")
    return per_id // 2


class _Progress:
    """One self-overwriting stderr line: step, items/s, ETA, last losses."""

    def __init__(self, enabled: bool, total: int, what: str, items_per_step: int):
        self.enabled, self.total, self.what, self.items = enabled, total, what, items_per_step
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, step: int, **values: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.5 and step != self.total:
            return
        self.last = now
        rate = step / max(now - self.start, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        vals = " ".join(f"{k}={v:.3f}" for k, v in values.items())
        end = "\n" if step == self.total else ""
        print(
            f"\r{self.what} {step}/{self.total} {rate * self.items:.1f} items/s ETA {eta:.0f}s {vals}",
            end=end,
            file=sys.stderr,
            flush=True,
        )


class DVGFace(Generator):
    """DVG-Face dual generator: NIR/VIS encoders, AdaIN decoder, identity sampler; paired NIR-VIS images.

    ``image_size``/``width`` shrink the networks for CPU runs (defaults: the released 128x128 nets).
    The face model that supplies identities is set with :meth:`set_face_model` (any backbone), or
    built from ``face_backbone`` (+ optional released ``face_weights``).
    """

    paper: ClassVar[str] = PAPER
    output: ClassVar[str] = "image"
    recipe: ClassVar[str] = "dvg"

    def __init__(
        self,
        image_size: int = 128,
        width: float = 1.0,
        identity_dim: int = 256,
        noise_dim: int = 256,
        face_backbone: str = "lightcnn29",
        face_weights: str | None = None,
        identity_sampler_weights: str | None = None,
        lr: float = 2e-4,
        num_attributes: int = 256,
        identity_weight: float = 1.0,
    ):
        super().__init__()
        self.image_size = image_size
        self.width = width
        self.lr = lr
        self.identity_dim = identity_dim
        self.noise_dim = noise_dim
        self.decoder = Decoder(image_size, width, input_dim=identity_dim + 256)
        n_style = self.decoder.num_adain_params
        self.encoder_nir = Encoder(image_size, width, 256, n_style)
        self.encoder_vis = Encoder(image_size, width, 256, n_style)
        self.identity_sampler = IdentitySampler(noise_dim, identity_dim)
        if not identity_weight > 0:
            raise ParameterError(f"identity_weight must be > 0, got {identity_weight!r}")
        # 1.0: the released weights. Larger values make short (CPU) trainings put the sampled identity
        # into the images: it scales the identity-preserving weight and its NIR-VIS pair term alike.
        base = LossWeights()
        self.weights = attrs.evolve(base, ip=base.ip * identity_weight, ip_pair=base.ip_pair * identity_weight)
        # Real attribute codes (pairs of the same subject) used for sampling, as gen_samples.py does.
        # Fixed size so that saved generators load strictly; ``attributes_count`` rows are valid.
        self.register_buffer("attributes_nir", torch.zeros(num_attributes, 256))
        self.register_buffer("attributes_vis", torch.zeros(num_attributes, 256))
        self.register_buffer("attributes_count", torch.zeros((), dtype=torch.long))
        self._face: list[nn.Module] = []  # a list so the frozen face model is not part of state_dict
        self._face_spec = (face_backbone, face_weights)
        #: the released sampler file it was loaded from (the recipe then keeps it frozen)
        self.identity_sampler_source = str(identity_sampler_weights) if identity_sampler_weights else None
        if identity_sampler_weights:
            load_original(self.identity_sampler, identity_sampler_weights)

    def build_params(self) -> dict[str, Any]:
        """The constructor parameters that shape the networks (stored with saved weights, so that
        ``facerun generate --weights`` rebuilds the generator without repeating them)."""
        return {
            "image_size": self.image_size,
            "width": self.width,
            "identity_dim": self.identity_dim,
            "noise_dim": self.noise_dim,
            "num_attributes": int(self.attributes_nir.shape[0]),
        }

    # -- the face model ---------------------------------------------------------------------------
    def set_face_model(self, face: nn.Module) -> None:
        """Use ``face`` (frozen, eval mode) for the identity features; its embedding size must match."""
        if getattr(face, "embedding_size", self.identity_dim) != self.identity_dim:
            raise ValueError(f"face model embeds to {face.embedding_size}-d but identity_dim is {self.identity_dim}")
        face.eval().requires_grad_(False)
        self._face = [face]

    @property
    def face(self) -> nn.Module:
        if not self._face:
            import facerec

            name, weights = self._face_spec
            face = facerec.create("backbone", name, embedding_size=self.identity_dim)
            if weights:
                facerec.load_weights(face, weights)
            self.set_face_model(face)
        return self._face[0]

    # -- generation -------------------------------------------------------------------------------
    def encode(self, nir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z_n, z_v = self.encoder_nir.encode(nir), self.encoder_vis.encode(vis)
        return z_n, z_v, self.encoder_nir.style(z_n), self.encoder_vis.style(z_v)

    def render(self, identity: Tensor, z: Tensor, style: Tensor, is_nir: Tensor) -> Tensor:
        """One decoder call for any mix of NIR (True) and VIS samples (on CPU: in slices of
        ``CPU_SLICE_ROWS``, which keep the decoder's feature maps in cache)."""
        return cpu_slices(self.decoder, torch.cat([identity, z], dim=1), style, is_nir)

    def train_step(self, nir: Tensor, vis: Tensor, idx: Tensor, noise: Tensor) -> StepOutput:
        """The released losses with one decoder call (6B) and two face-model calls."""
        face = self.face
        with torch.no_grad():
            id_vis = face_identity(face, vis)
            id_noise = self.identity_sampler(noise)
        z_n, z_v, s_n, s_v = self.encode(nir, vis)
        b = len(nir)
        ids = torch.cat([id_vis, id_vis[idx], id_noise] * 2)
        zs = torch.cat([z_n.repeat(3, 1), z_v.repeat(3, 1)])
        styles = torch.cat([s_n.repeat(3, 1), s_v.repeat(3, 1)])
        is_nir = torch.arange(6 * b, device=nir.device) < 3 * b
        imgs = self.render(ids, zs, styles, is_nir).split(b)
        out = dict(zip(["rec_nir", "rec_nir_idx", "fake_nir", "rec_vis", "rec_vis_idx", "fake_vis"], imgs))
        names = ["rec_nir", "rec_vis", "fake_nir", "fake_vis"]
        feats = cpu_slices(lambda x: face_identity(face, x), torch.cat([out[n] for n in names])).split(b)
        return _losses(self.weights, nir, vis, id_vis, id_noise, z_n, z_v, out, dict(zip(names, feats)))

    def original_step(self, nir: Tensor, vis: Tensor, idx: Tensor, noise: Tensor) -> StepOutput:
        """The same losses with the original call structure: 6 decoder and 5 face-model calls."""
        face = self.face
        id_vis = face_identity(face, vis)
        with torch.no_grad():
            id_noise = self.identity_sampler(noise)
        z_n, z_v, s_n, s_v = self.encode(nir, vis)
        dec = self.decoder
        cat = lambda a, b: torch.cat([a, b], dim=1)  # noqa: E731
        out = {
            "rec_nir": dec(cat(id_vis, z_n), s_n, "nir"),
            "rec_nir_idx": dec(cat(id_vis[idx], z_n), s_n, "nir"),
            "fake_nir": dec(cat(id_noise, z_n), s_n, "nir"),
            "rec_vis": dec(cat(id_vis, z_v), s_v, "vis"),
            "rec_vis_idx": dec(cat(id_vis[idx], z_v), s_v, "vis"),
            "fake_vis": dec(cat(id_noise, z_v), s_v, "vis"),
        }
        f = {n: face_identity(face, out[n]) for n in ("rec_nir", "rec_vis", "fake_nir", "fake_vis")}
        return _losses(self.weights, nir, vis, id_vis.detach(), id_noise, z_n, z_v, out, f)

    def optimizer(self) -> torch.optim.Optimizer:
        params = [*self.encoder_nir.parameters(), *self.encoder_vis.parameters(), *self.decoder.parameters()]
        return torch.optim.Adam(params, lr=self.lr, betas=(0.5, 0.999))

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
        """Train the dual generator on paired NIR/VIS images of ``dataset`` (face model, sampler frozen).

        The derangement of identities is drawn once per epoch (one pass over the anchors), as in
        the original. Incomplete batches do not occur: every step draws ``batch_size`` pairs.
        ``checkpoint``: continue from its file when there is one and save to it (exact resume); the
        returned ``step`` is below ``steps`` when it stopped early (``stop_at``), and then the attribute
        codes are not stored yet.
        """
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 (the identity derangement needs two samples)")
        g = torch.Generator().manual_seed(seed)
        sampler = PairSampler(dataset.labels, dataset_modality(dataset))
        self.to(device).train()
        face = self.face.to(device)
        self.identity_sampler.eval().requires_grad_(False)
        opt = self.optimizer()
        steps_per_epoch = max(1, len(sampler.anchors) // batch_size)
        stats: dict[str, float] = {}
        idx = derangement(batch_size, g, device)
        ckpt = checkpoint or LoopCheckpoint(None)
        start, extra, saved = ckpt.restore({"generator": self}, opt, g, {"idx": idx})
        idx, stats = extra["idx"], dict(saved.get("stats", {}))
        log = [] if log is None else log  # kept in the checkpoint, so a resumed run has the whole log
        log[:] = list(saved.get("log", []))
        bar = _Progress(progress, steps, "dvg generator", batch_size)
        end = ckpt.end(steps)
        for step in range(start + 1, end + 1):
            if (step - 1) % steps_per_epoch == 0 and step > 1:
                idx = derangement(batch_size, g, device)
            ni, vi, _ = sampler.sample(batch_size, g)
            nir = fetch_images(dataset, ni, self.image_size, device)
            vis = fetch_images(dataset, vi, self.image_size, device)
            noise = torch.randn(batch_size, self.noise_dim, generator=g).to(device)
            out = self.train_step(nir, vis, idx, noise)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            stats = {k: float(getattr(out, k).detach()) for k in ("loss", "ort", "pix", "ip")}
            log.append({"step": step, **stats})
            bar.update(step, **stats)
            if ckpt.due(step, end):
                ckpt.save(step, {"generator": self}, opt, g, {"idx": idx}, stats, log)
        if max(start, end) < steps:  # stopped early (stop_at): no attribute codes yet
            return {**stats, "step": float(max(start, end))}
        self.store_attributes(dataset, sampler=sampler, device=device, seed=seed)
        if ckpt.path is not None:  # the finished state, attribute codes included (it can generate)
            ckpt.save(steps, {"generator": self}, opt, g, {"idx": idx}, stats, log)
        del face
        return {**stats, "step": float(steps)}

    @torch.no_grad()
    def store_attributes(
        self, dataset: Dataset, *, sampler: PairSampler | None = None, device: str = "cpu", seed: int = 0
    ) -> None:
        """Encode ``count`` real (NIR, VIS) pairs; sampling combines new identities with these attributes."""
        sampler = sampler or PairSampler(dataset.labels, dataset_modality(dataset))
        g = torch.Generator().manual_seed(seed + 1)
        was = self.training
        self.eval().to(device)
        zn, zv = [], []
        count = len(self.attributes_nir)
        for start in range(0, count, 64):
            ni, vi, _ = sampler.sample(min(64, count - start), g)
            zn.append(self.encoder_nir.encode(fetch_images(dataset, ni, self.image_size, device)))
            zv.append(self.encoder_vis.encode(fetch_images(dataset, vi, self.image_size, device)))
        self.attributes_nir.copy_(torch.cat(zn))
        self.attributes_vis.copy_(torch.cat(zv))
        self.attributes_count.fill_(count)
        self.train(was)

    def _attributes(self, k: int, generator: torch.Generator, device: str) -> tuple[Tensor, Tensor]:
        n = int(self.attributes_count)
        if n == 0:
            raise FacerecError("the dvg generator has no stored attribute codes: fit it or call store_attributes()")
        j = torch.randint(n, (k,), generator=generator).to(device)
        return self.attributes_nir[j], self.attributes_vis[j]

    @torch.no_grad()
    def sample_pairs(self, n: int, *, generator: torch.Generator, device: str = "cpu") -> tuple[Tensor, Tensor]:
        """``n`` (NIR, VIS) pairs of ``n`` new identities, each pair with real attributes of one subject."""
        self.eval().to(device)
        noise = torch.randn(n, self.noise_dim, generator=generator).to(device)
        identity = self.identity_sampler(noise)
        z_n, z_v = self._attributes(n, generator, device)
        s_n, s_v = self.encoder_nir.style(z_n), self.encoder_vis.style(z_v)
        is_nir = torch.arange(2 * n, device=device) < n
        imgs = self.render(identity.repeat(2, 1), torch.cat([z_n, z_v]), torch.cat([s_n, s_v]), is_nir)
        return imgs[:n], imgs[n:]

    @torch.no_grad()
    def sample(
        self, num_ids: int, per_id: int, *, seed: int = 0, device: str = "cpu", batch_size: int = 64
    ) -> Iterator[GeneratedBatch]:
        """``per_id`` images per new identity (the Generator contract, as ``facerun generate --per-id``):
        ``per_id // 2`` NIR/VIS pairs, each pair with the attributes of one real subject; per batch NIR
        images first, then their VIS partners (modality 1/0). ``per_id`` must be even."""
        pairs = _pairs_per_id(per_id)
        g = torch.Generator().manual_seed(seed)
        ids_per_batch = max(1, batch_size // per_id)
        for first in range(0, num_ids, ids_per_batch):
            n_ids = min(ids_per_batch, num_ids - first)
            noise = torch.randn(n_ids, self.noise_dim, generator=g).to(device)
            identity = self.identity_sampler.eval().to(device)(noise).repeat_interleave(pairs, 0)
            k = len(identity)
            z_n, z_v = self._attributes(k, g, device)
            self.eval()
            s_n, s_v = self.encoder_nir.style(z_n), self.encoder_vis.style(z_v)
            is_nir = torch.arange(2 * k, device=device) < k
            imgs = self.render(identity.repeat(2, 1), torch.cat([z_n, z_v]), torch.cat([s_n, s_v]), is_nir)
            labels = torch.arange(first, first + n_ids).repeat_interleave(pairs).repeat(2)
            modality = torch.cat([torch.ones(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)])
            yield GeneratedBatch(labels=labels, images=imgs.cpu(), modality=modality)

    # -- identity sampler training (not released upstream) -----------------------------------------
    def fit_identity_sampler(
        self,
        features: Tensor,
        *,
        steps: int,
        batch_size: int = 256,
        lr: float = 1e-3,
        kl_weight: float = 0.01,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        checkpoint: LoopCheckpoint | None = None,
    ) -> dict[str, float]:
        """Train the sampler as the decoder of a VAE over unit-norm identity features of real faces.

        Loss per batch: ``(1 - cos(dec(z), f)).mean() + kl_weight * KL``, z reparameterised from the
        encoder's (mu, logvar); afterwards ``dec(N(0, I))`` draws new identities. ``checkpoint`` as in
        :meth:`fit` (the returned ``step`` is below ``steps`` when it stopped early).
        """
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        feats = F.normalize(features.float(), dim=1).to(device)
        enc = IdentityEncoder(self.identity_dim, self.noise_dim).to(device)
        dec = self.identity_sampler.to(device).train().requires_grad_(True)
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
        ckpt = checkpoint or LoopCheckpoint(None)
        modules = {"encoder": enc, "sampler": dec}
        start, _, saved = ckpt.restore(modules, opt, g)
        stats: dict[str, float] = dict(saved.get("stats", {}))
        bar = _Progress(progress, steps, "identity sampler", batch_size)
        end = ckpt.end(steps)
        for step in range(start + 1, end + 1):
            f = feats[torch.randint(len(feats), (min(batch_size, len(feats)),), generator=g).to(device)]
            mu, logvar = enc(f)
            rec = dec(reparameterize(mu, logvar))
            l_rec = (1 - (rec * f).sum(1)).mean()
            l_kl = kl_divergence(mu, logvar)
            loss = l_rec + kl_weight * l_kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            stats = {"sampler_rec": float(l_rec.detach()), "sampler_kl": float(l_kl.detach())}
            bar.update(step, **stats)
            if ckpt.due(step, end):
                ckpt.save(step, modules, opt, g, stats=stats)
        dec.eval().requires_grad_(False)
        return {**stats, "sampler_step": float(max(start, end))}

    # -- checkpoints --------------------------------------------------------------------------------
    def load_original(
        self,
        *,
        encoder_nir: str | Path | None = None,
        encoder_vis: str | Path | None = None,
        decoder: str | Path | None = None,
        identity_sampler: str | Path | None = None,
    ) -> None:
        """Load DVG-Face's own files (``encoder_nir_epoch_e.pth.tar`` ..., ``dec_epoch_45.pth.tar``) strictly."""
        for module, path in (
            (self.encoder_nir, encoder_nir),
            (self.encoder_vis, encoder_vis),
            (self.decoder, decoder),
            (self.identity_sampler, identity_sampler),
        ):
            if path is not None:
                load_original(module, path)
