"""The standard supervised recipe: a backbone and a classification head on a facerec Dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from ..api import Dataset
from ..errors import FacerecError
from . import distributed as D
from .config import TrainConfig
from .trainer import Trainer


class StepIndices:
    """Deterministic sample order: an endless concatenation of per-epoch permutations of ``range(n)``.

    Micro-batch ``i`` is positions ``[i*B, (i+1)*B)`` of that stream, so any step can be fetched
    directly (exact, free resume; the same global batches for any number of processes).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True):
        if n <= 0:
            raise FacerecError("the training dataset is empty")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self._cache: dict[int, Tensor] = {}

    def epoch_order(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._cache[epoch] = torch.randperm(self.n, generator=g)
            else:
                self._cache[epoch] = torch.arange(self.n)
        return self._cache[epoch]

    def __call__(self, i: int) -> Tensor:
        start, stop = i * self.batch_size, (i + 1) * self.batch_size
        first, last = start // self.n, (stop - 1) // self.n
        stream = torch.cat([self.epoch_order(e) for e in range(first, last + 1)])
        offset = first * self.n
        return stream[start - offset : stop - offset]


class _FromStep:
    """An endless batch sampler for DataLoader, starting at micro-batch ``start``."""

    def __init__(self, indices: Callable[[int], Tensor], start: int):
        self.indices, self.start = indices, start

    def __iter__(self) -> Iterator[list[int]]:
        i = self.start
        while True:
            yield self.indices(i).tolist()
            i += 1


class LoaderBatches:
    """Callable ``i -> batch`` backed by a DataLoader (worker processes, prefetching). Asking for a
    micro-batch other than the next one restarts the loader at that position."""

    def __init__(
        self, dataset: Any, indices: Callable[[int], Tensor], *, num_workers: int = 0, pin_memory: bool = False
    ):
        self.dataset, self.indices = dataset, indices
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._iter: Iterator | None = None
        self._next = -1

    def __call__(self, i: int) -> Any:
        if self._iter is None or i != self._next:
            from torch.utils.data import DataLoader

            loader = DataLoader(
                self.dataset,
                batch_sampler=_FromStep(self.indices, i),
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=False,
                prefetch_factor=4 if self.num_workers else None,
            )
            self._iter = iter(loader)
        self._next = i + 1
        return next(self._iter)


def has_fast_batch(dataset: Any) -> bool:
    """True when the dataset overrides ``Dataset.batch`` (fetches many samples at once)."""
    method = getattr(type(dataset), "batch", None)
    return method is not None and method is not Dataset.batch


def dataset_batches(
    dataset: Any, config: TrainConfig, *, seed: int | None = None, shuffle: bool = True
) -> Callable[[int], Any]:
    """Callable ``i -> this rank's part of micro-batch i`` for the Trainer (``local_batches=True``).

    Uses the dataset's fast ``batch(indices)`` when it has one, else a DataLoader with
    ``config.num_workers`` workers."""
    D.init_from_env(config.device)
    micro = config.batch_size // config.grad_accum
    order = StepIndices(len(dataset), micro, config.seed if seed is None else seed, shuffle)
    part = D.local_slice(micro)

    def local(i: int) -> Tensor:
        return order(i)[part]

    if has_fast_batch(dataset):
        return lambda i: dataset.batch(local(i).tolist())
    return LoaderBatches(
        dataset, local, num_workers=config.num_workers, pin_memory=str(config.device).startswith("cuda")
    )


def random_flip(images: Tensor, p: float = 0.5) -> Tensor:
    """Horizontal flip of a random subset of a batch, vectorised."""
    flip = torch.rand(images.shape[0], device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _concat(batch: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(batch)
    for key, value in extra.items():
        if key in out and isinstance(value, Tensor) and isinstance(out[key], Tensor):
            out[key] = torch.cat([out[key], value.to(out[key].device, out[key].dtype)])
    return out


def classifier_loss(
    backbone: nn.Module | None, num_classes: int, *, augment: Callable[[Tensor], Tensor] | None = None
) -> Callable:
    """The loss_fn of :func:`train_classifier`: prepare (+augment) images, embed, head loss, accuracy."""
    spec = getattr(backbone, "input_spec", None)

    def loss_fn(batch: Mapping[str, Any], modules: Mapping[str, nn.Module], step: int) -> dict[str, Tensor]:
        labels = torch.as_tensor(batch["label"]).long()
        if labels.numel() and int(labels.max()) >= num_classes:
            raise FacerecError(f"label {int(labels.max())} is out of range for a head with {num_classes} classes")
        if "image" in batch:
            if backbone is None:
                raise FacerecError("this dataset yields images, but no backbone was given")
            images = batch["image"].float()
            if augment is not None:
                images = augment(images)
            embeddings = modules["backbone"](spec.prepare(images) if spec is not None else images)
        elif "feature" in batch:
            embeddings = batch["feature"].float()
            if "backbone" in modules and backbone is not None and getattr(backbone, "accepts_features", False):
                embeddings = modules["backbone"](embeddings)
        else:
            raise FacerecError(f"batches need an 'image' or 'feature' entry, got {', '.join(batch)}")
        labels = labels.to(embeddings.device)
        out = modules["head"](embeddings, labels)
        logs = {"loss": out.loss}
        if out.logits is not None and out.logits.shape[-1] == num_classes:
            known = labels >= 0
            if known.any():
                logs["acc"] = (out.logits.detach()[known].argmax(-1) == labels[known]).float().mean()
        for key, value in out.extras.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                logs[key] = value
        return logs

    return loss_fn


# the metrics, or (metrics, trainer) with return_trainer=True
@overload
def train_classifier(
    backbone: nn.Module | None,
    head: nn.Module,
    dataset: Any,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    evaluators: Sequence | Mapping = (),
    extra_batches: Callable[[int], Mapping[str, Any]] | None = None,
    augment: Callable[[Tensor], Tensor] | None | str = "flip",
    param_groups: Mapping[str, float] | None = None,
    frozen: Sequence[str] = (),
    resume: str | Path | bool | None = None,
    name: str = "train",
    return_trainer: Literal[False] = False,
) -> dict[str, Any]: ...


@overload
def train_classifier(
    backbone: nn.Module | None,
    head: nn.Module,
    dataset: Any,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    evaluators: Sequence | Mapping = (),
    extra_batches: Callable[[int], Mapping[str, Any]] | None = None,
    augment: Callable[[Tensor], Tensor] | None | str = "flip",
    param_groups: Mapping[str, float] | None = None,
    frozen: Sequence[str] = (),
    resume: str | Path | bool | None = None,
    name: str = "train",
    return_trainer: Literal[True],
) -> tuple[dict[str, Any], Trainer]: ...


def train_classifier(
    backbone: nn.Module | None,
    head: nn.Module,
    dataset: Any,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    evaluators: Sequence | Mapping = (),
    extra_batches: Callable[[int], Mapping[str, Any]] | None = None,
    augment: Callable[[Tensor], Tensor] | None | str = "flip",
    param_groups: Mapping[str, float] | None = None,
    frozen: Sequence[str] = (),
    resume: str | Path | bool | None = None,
    name: str = "train",
    return_trainer: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], Trainer]:
    """Train ``backbone`` + ``head`` (a facerec Head: ``head(embeddings, labels) -> HeadOutput``) on a
    facerec Dataset of images (or features, with ``backbone=None``) and return the final metrics.

    Images are canonical (``[B,3,H,W]`` RGB in [0,1]); they are augmented (``augment``: a callable on
    the batch, ``"flip"`` = random horizontal flip, None = off) and prepared with
    ``backbone.input_spec.prepare`` on the device. ``extra_batches(i)`` may return more samples
    (same keys, e.g. generated images) appended to micro-batch ``i``. Protocol evaluators evaluate the
    backbone. Batches are drawn deterministically per step, so ``resume`` is exact and any number of
    DDP processes sees the same global batches.
    """
    modules: dict[str, nn.Module] = {"head": head}
    if backbone is not None:
        modules = {"backbone": backbone, "head": head}
    num_classes = int(getattr(head, "num_classes", 0) or getattr(dataset, "num_classes", 0))
    if num_classes <= 0:
        raise FacerecError("cannot train a classifier: the dataset has no identity labels (num_classes is 0)")
    base = dataset_batches(dataset, config)
    batches: Callable[[int], Any] = base
    if extra_batches is not None:
        batches = lambda i: _concat(base(i), extra_batches(i))  # noqa: E731
    aug = random_flip if augment == "flip" else augment
    if isinstance(aug, str):
        raise FacerecError(f"unknown augmentation {augment!r} (use 'flip', None or a callable)")
    trainer = Trainer(
        modules,
        classifier_loss(backbone, num_classes, augment=aug),
        batches,
        config,
        run_dir=run_dir,
        param_groups=param_groups,
        frozen=frozen,
        evaluators=evaluators,
        resume=resume,
        local_batches=True,
        num_samples=len(dataset),
        name=name,
    )
    result = trainer.fit()
    return (result, trainer) if return_trainer else result
