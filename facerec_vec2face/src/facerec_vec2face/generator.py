"""The ``vec2face`` generator: the facerec Generator interface around :class:`Vec2FaceNet`.

Its state dict is exactly the released ``model_vec2face`` layout (estimators and the identity
sampler are kept outside the module tree), so ``facerec.load_weights`` loads the released file
strictly. Sampling is seeded end to end: identity vectors, perturbations and masks all come from
``torch.Generator`` objects derived from ``seed`` and the identity index, so any shard of
identities reproduces the same images as a full run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from facerec.api import Dataset, GeneratedBatch, Generator, unwrap_state_dict
from facerec.errors import DataError, ParameterError, WeightsError

from . import safe_load  # noqa: F401  (admits the checkpoints' argparse.Namespace)
from .attrop import AttrResult, AttrTargets, optimise_attributes
from .estimators import Embedder, PoseEstimator, QualityEstimator
from .sampling import IdentitySampler, SeparatedIdentities, perturb
from .vit import CONFIGS, MaskConfig, NetConfig, Vec2FaceNet, net_config

PAPER = (
    "Wu, Singh, Tian, Zheng, Bowyer: Vec2Face: Scaling Face Dataset Generation with Loosely "
    "Constrained Vectors, ICLR 2025 (arXiv 2409.02979)"
)


def load_centers(path: str | Path) -> Tensor:
    """Identity vectors [N, D] from a ``.npy`` matrix (e.g. center_feature_examples.npy) or a ``facerun
    extract`` feature file (``.safetensors``): with labels (an identity-folder tree) each identity is the
    plain mean of its images' features (the original's ``scripts/center_features.py``), in label order;
    without (a flat folder of reference images) every image is one identity, in file order (the original's
    ``image_generation_with_reference.py``). Read once per file version."""
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise DataError(f"cannot read centre features {path}: no such file") from None
    key = (str(path.resolve()), stamp)
    if key not in _CENTRES:
        _CENTRES.clear()
        _CENTRES[key] = _read_centers(path)
    return _CENTRES[key]


_CENTRES: dict[tuple[str, int], Tensor] = {}


def _read_centers(path: Path) -> Tensor:
    if path.suffix == ".safetensors":
        from facerec.protocols.common import load_features

        table = load_features(path)
        emb = table.embeddings.float()
        if table.labels is None:
            return emb.contiguous()
        labels = table.labels.long()
        uniq, inverse = torch.unique(labels, return_inverse=True)
        sums = torch.zeros(len(uniq), emb.shape[1]).index_add_(0, inverse, emb)
        return sums / torch.bincount(inverse, minlength=len(uniq)).clamp(min=1).unsqueeze(1).float()
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read centre features {path}: {exc}") from None
    if arr.ndim != 2:
        raise DataError(f"centre features {path} must be a [N, D] matrix, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _named_architecture(path: str | Path) -> torch.nn.Module | None:
    """An estimator saved by facerec with its architecture in the metadata (``arch`` = a registered backbone,
    ``params`` = its JSON arguments), e.g. a smaller identity model; None for the originals' files (R100)."""
    if not str(path).endswith(".safetensors"):
        return None
    import json

    import facerec
    from facerec.weights import read_metadata

    meta = read_metadata(path)
    arch = meta.get("arch")
    if not arch or arch == "vec2face":
        return None
    params = json.loads(meta.get("params") or "{}")
    if arch == "sixdrepnet":  # the pose estimator is no registered backbone
        from .sixdrepnet import SixDRepNet

        return SixDRepNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    return facerec.create("backbone", arch, **params)


def _seeded(seed: int, *stream: int) -> torch.Generator:
    """Independent, reproducible stream per (seed, purpose, index)."""
    mix = np.random.SeedSequence([seed & 0xFFFFFFFF, *stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mix))


class Vec2Face(Generator, Vec2FaceNet):
    """Vec2Face: face images from identity vectors (ViT + pixel decoder); configs base/large/huge/tiny."""

    paper: ClassVar[str] = PAPER
    output: ClassVar[str] = "image"
    recipe: ClassVar[str] = "vec2face"

    def __init__(
        self,
        config: str = "base",
        rep_dim: int | None = None,
        mask_min: float = 0.1,
        mask_max: float = 1.0,
        mask_mu: float = 0.15,
        mask_std: float = 0.25,
        perturb_eps: Sequence[float] = (0.3, 0.5, 0.7),
        perturb_pct: Sequence[float] = (0.4, 0.4, 0.2),
        min_separation: float | None = None,
        identity_weights: str | None = None,
        quality_weights: str | None = None,
        pose_weights: str | None = None,
        attr_iters: int = 5,
        quality_target: float = 27.0,
    ):
        if config not in CONFIGS:
            raise ParameterError(f"unknown Vec2Face config {config!r}; choose one of {', '.join(CONFIGS)}")
        cfg: NetConfig = net_config(config, **({"rep_dim": rep_dim} if rep_dim else {}))
        super().__init__(cfg, MaskConfig(mask_min, mask_max, mask_mu, mask_std))
        self.config_name = config
        self.perturb_eps, self.perturb_pct = tuple(perturb_eps), tuple(perturb_pct)
        if len(self.perturb_eps) != len(self.perturb_pct):
            raise ParameterError("perturb_eps and perturb_pct need the same length")
        self.min_separation = min_separation
        self.attr = AttrTargets(quality=quality_target, max_iters=attr_iters)
        # Not submodules: they must stay out of the state dict (strict loading of released weights).
        object.__setattr__(self, "_estimators", {})
        object.__setattr__(self, "identity_sampler", None)
        self._estimator_files = {"identity": identity_weights, "quality": quality_weights, "pose": pose_weights}

    # -- checkpoints ---------------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """Released/training checkpoint (``model_vec2face``) or a plain state dict -> our state dict."""
        if not isinstance(checkpoint, Mapping):
            raise WeightsError(f"Vec2Face checkpoint must be a dict, got {type(checkpoint).__name__}")
        if "model_vec2face" in checkpoint:
            checkpoint = checkpoint["model_vec2face"]
        elif "model_disc" in checkpoint or "optimizer_vec2face" in checkpoint:
            raise WeightsError("Vec2Face checkpoint has no 'model_vec2face' entry")
        return unwrap_state_dict(checkpoint, prefixes=("module.",))

    # -- estimators ----------------------------------------------------------------------------
    def set_estimators(
        self,
        identity: torch.nn.Module | None = None,
        quality: torch.nn.Module | None = None,
        pose: torch.nn.Module | None = None,
    ) -> None:
        """Attach frozen estimators (ArcFace-like identity model, MagFace quality model, 6DRepNet)."""
        if identity is not None:
            self._estimators["identity"] = Embedder(identity)
        if quality is not None:
            self._estimators["quality"] = QualityEstimator(quality)
        if pose is not None:
            self._estimators["pose"] = PoseEstimator(pose)

    def _load_estimators(self) -> None:
        from facerec.nn import IResNet100  # core, lazily: only when files were given
        from facerec.weights import load_weights

        from .sixdrepnet import SixDRepNet

        for role, path in self._estimator_files.items():
            if path and role not in self._estimators:
                model = _named_architecture(path) or (SixDRepNet() if role == "pose" else IResNet100())
                load_weights(model, path)
                self.set_estimators(**{role: model})

    def estimator(self, role: str) -> torch.nn.Module | None:
        self._load_estimators()
        return self._estimators.get(role)

    # -- identities ----------------------------------------------------------------------------
    def fit_identity_sampler(self, centers: Tensor) -> IdentitySampler:
        object.__setattr__(self, "identity_sampler", IdentitySampler.fit(centers))
        return self.identity_sampler

    def identities(
        self, num_ids: int, *, seed: int = 0, first_id: int = 0, centers: Tensor | str | None = None
    ) -> Tensor:
        """Identity vectors for ids ``first_id .. first_id+num_ids-1``: given centres or PCA-Gaussian draws."""
        if centers is not None:
            centers = load_centers(centers) if isinstance(centers, (str, Path)) else torch.as_tensor(centers)
            if first_id + num_ids > len(centers):
                raise DataError(
                    f"asked for identities {first_id}..{first_id + num_ids - 1} but the centre file "
                    f"holds {len(centers)}"
                )
            out = centers[first_id : first_id + num_ids].float()
        elif self.identity_sampler is not None:
            sampler: IdentitySampler = self.identity_sampler
            # min_separation: identities are kept greedily from one candidate stream per seed, extended (and
            # cached) as later ids are asked for; otherwise each id has its own stream.
            if self.min_separation is not None:
                out = self._separated(sampler, seed).take(first_id + num_ids)[first_id:]
            else:
                out = torch.cat([sampler.sample(1, generator=_seeded(seed, 1, first_id + i)) for i in range(num_ids)])
        else:
            raise ParameterError(
                "vec2face needs identity vectors: pass centers=<file.npy>, fit_centers=<file.npy>, "
                "or fit the generator first"
            )
        if out.shape[1] != self.config.rep_dim:
            raise DataError(f"identity vectors have {out.shape[1]} dims, the generator expects {self.config.rep_dim}")
        return out

    def _separated(self, sampler: IdentitySampler, seed: int) -> SeparatedIdentities:
        cache = getattr(self, "_separated_cache", None)
        if cache is None or cache[0] is not sampler or cache[1] != (seed, self.min_separation):
            stream = SeparatedIdentities(sampler, float(self.min_separation), lambda b: _seeded(seed, 1, b))
            cache = (sampler, (seed, self.min_separation), stream)
            object.__setattr__(self, "_separated_cache", cache)
        return cache[2]

    # -- generation ----------------------------------------------------------------------------
    def decode(self, rep: Tensor, generator: torch.Generator | None = None, rate: float | None = None) -> Tensor:
        """Vectors -> images clipped to [-1, 1] (one mask rate per call, positions per sample)."""
        return self(rep, generator=generator, rate=rate).image.clamp(-1, 1)

    def sample(
        self,
        num_ids: int,
        per_id: int,
        *,
        seed: int = 0,
        device: str = "cpu",
        batch_size: int = 64,
        first_id: int = 0,
        centers: Tensor | str | None = None,
        fit_centers: Tensor | str | None = None,
        yaw: float | None = None,
        quality: float | None = None,
        progress: bool = False,
    ) -> Iterator[GeneratedBatch]:
        """Yield canonical images ([0,1]) per identity; labels are ``first_id + i``, ``per_id`` each.

        ``centers`` uses given vectors as identities; ``fit_centers`` fits the PCA-Gaussian on them
        first. ``quality`` / ``yaw`` run the bounded AttrOP (needs identity/quality/pose estimators).
        """
        if num_ids < 1 or per_id < 1:
            raise ParameterError(f"num_ids and per_id must be >= 1, got {num_ids} and {per_id}")
        if fit_centers is not None:
            c = load_centers(fit_centers) if isinstance(fit_centers, (str, Path)) else torch.as_tensor(fit_centers)
            # facerun generate asks chunk by chunk: refit only for other centres (keeps min_separation's cache)
            if getattr(self, "_fitted_on", None) is not c:
                self.fit_identity_sampler(c)
                object.__setattr__(self, "_fitted_on", c)
        report: dict[int, dict[str, int]] = {}
        object.__setattr__(self, "_last_report", report)
        was_training = self.training
        self.eval().to(device)
        try:
            ids = self.identities(num_ids, seed=seed, first_id=first_id, centers=centers).to(device)
            ident = self.estimator("identity")
            steer = ident is not None and (quality is not None or yaw is not None or self.estimator("quality"))
            if steer:  # the original refines every centre once (quality only) before perturbing
                refined = self._attrop(ids, quality=quality, yaw=None, seed=seed, stream=(2, first_id))
                ids = refined.vectors
                for j, ok in enumerate(refined.accepted.tolist()):
                    report[first_id + j] = {"centre_accepted": int(ok), "centre_steps": int(refined.iterations[j])}
            ids_per_batch = max(1, batch_size // per_id)
            for start in range(0, num_ids, ids_per_batch):
                chunk = ids[start : start + ids_per_batch]
                # One stream per identity: perturbation, mask rates and positions do not depend on the
                # batching, so any shard/batch size reproduces the same images for the same id.
                vecs, rates, noise = [], [], []
                for j in range(len(chunk)):
                    g = _seeded(seed, 3, first_id + start + j)
                    vecs.append(
                        perturb(chunk[j : j + 1].cpu(), per_id, eps=self.perturb_eps, pct=self.perturb_pct, generator=g)
                    )
                    rates.append(self.draw_rates(per_id, g))
                    noise.append(torch.rand(per_id, self.num_tokens, generator=g))
                v, r, z = torch.cat(vecs).to(device), torch.cat(rates), torch.cat(noise)
                if steer and yaw is not None:
                    res = self._attrop(
                        v,
                        quality=quality,
                        yaw=yaw,
                        seed=seed,
                        stream=(4, first_id + start),
                        class_rep=chunk.repeat_interleave(per_id, 0),
                    )
                    images = res.images
                    met = res.accepted.view(len(chunk), per_id).sum(1).tolist()
                    for j, k in enumerate(met):
                        report.setdefault(first_id + start + j, {}).update(samples=per_id, samples_accepted=int(k))
                else:
                    with torch.no_grad():
                        images = torch.cat(
                            [
                                self(
                                    v[i : i + batch_size], rate=r[i : i + batch_size], noise=z[i : i + batch_size]
                                ).image.clamp(-1, 1)
                                for i in range(0, len(v), batch_size)
                            ]
                        )
                labels = torch.arange(first_id + start, first_id + start + len(chunk)).repeat_interleave(per_id)
                yield GeneratedBatch(labels=labels, images=((images.float() + 1) / 2).clamp(0, 1).cpu())
        finally:
            self.train(was_training)

    def generation_report(self) -> dict[int, dict[str, int]]:
        """AttrOP acceptance of the last :meth:`sample` call, per identity: ``centre_accepted`` (the centre's
        refinement met the identity and quality targets) and ``centre_steps``; with a yaw target also
        ``samples_accepted`` of ``samples``. Empty when AttrOP did not run. ``facerun generate`` sums it per run
        and keeps it per identity in ``OUT.report.json``."""
        return dict(getattr(self, "_last_report", {}) or {})

    def _attrop(
        self,
        vecs: Tensor,
        *,
        quality: float | None,
        yaw: float | None,
        seed: int,
        stream: tuple[int, int],
        class_rep: Tensor | None = None,
    ) -> AttrResult:
        ident = self.estimator("identity")
        q_model = self.estimator("quality")
        p_model = self.estimator("pose")
        if yaw is not None and p_model is None:
            raise ParameterError("yaw control needs a pose estimator (pose_weights=6DRepNet file)")
        if quality is not None and q_model is None:
            raise ParameterError("quality control needs a quality estimator (quality_weights=MagFace file)")
        targets = AttrTargets(
            quality=quality if quality is not None else self.attr.quality,
            yaw=yaw,
            max_iters=self.attr.max_iters,
            lr=self.attr.lr,
        )
        gen = _seeded(seed, *stream)
        for p in self.parameters():
            p.requires_grad_(False)
        try:
            res = optimise_attributes(
                lambda v: self.decode(v, gen),
                vecs,
                targets,
                identity=ident,
                quality=q_model,
                pose=p_model,
                class_rep=class_rep,
            )
        finally:
            for p in self.parameters():
                p.requires_grad_(True)
        return res

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        dataset: Dataset,
        *,
        steps: int,
        batch_size: int = 32,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Train on a dataset of images with identity features (``feature`` per sample, or an identity
        model via ``set_estimators(identity=...)`` that computes them). See :mod:`.training`. The result's
        ``losses_off`` names the loss terms left out (identity loss without an identity model, LPIPS without
        its weight files); the run says so on the terminal and in ``log.jsonl`` too."""
        from .training import TrainOptions, train_generator

        return train_generator(
            self,
            dataset,
            TrainOptions(steps=steps, batch_size=batch_size, device=device, seed=seed, progress=progress, **options),
        )
