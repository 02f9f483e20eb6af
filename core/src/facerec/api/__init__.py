"""The interfaces every facerec component implements, and the small value types they exchange.

Third parties implement these; keep them small and stable. Conventions shared by all components:

* Images travel between components as float tensors ``[B, 3, H, W]``, RGB, values in ``[0, 1]``
  ("canonical images"). A backbone's :class:`InputSpec` turns them into what the network wants
  (size, gray/BGR, scale, mean/std) with :meth:`InputSpec.prepare`, so pipelines are derived from
  the model and never guessed.
* Detectors (:class:`Detector`) find faces and 5 landmarks per image (:class:`Detections`).
* Samples are plain dicts so that torch's default collate batches them: ``image`` (canonical image
  ``[3, H, W]``) or ``feature`` (``[D]``), ``label`` (int, -1 when unknown), and optional metadata
  ``modality`` (0 = VIS, 1 = NIR; all of them at once: :attr:`Dataset.modality`), ``resolution``
  (int pixels), ``pose`` (yaw degrees).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor, nn

from .._version import API_VERSION  # noqa: F401  (plugins declare FACEREC_API = 1 in their package)
from .detection import Detections, Detector
from .input_spec import COLORS, Color, InputSpec  # noqa: F401  (Color: the type of InputSpec.color)

MODALITIES = ("VIS", "NIR")


class Backbone(nn.Module):
    """Image batch (already ``input_spec.prepare``-d) -> embedding batch ``[B, embedding_size]``.

    Subclasses set ``input_spec`` and ``embedding_size`` (class or instance attributes) and may set
    ``paper`` (a citation line). ``convert_checkpoint`` turns a paper's original checkpoint
    (already safely unpickled) into this module's state dict; ``facerec.load_weights`` calls it.
    """

    input_spec: InputSpec
    embedding_size: int
    paper: ClassVar[str] = ""

    def embed(self, images: Tensor) -> Tensor:
        """Canonical images -> embeddings: prepare for this network, then forward."""
        return self(self.input_spec.prepare(images))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """Original checkpoint -> state dict for this class. Default: unwrap and strip ``module.``."""
        return unwrap_state_dict(checkpoint)


@attrs.frozen
class HeadOutput:
    """What a head returns: the loss to minimise, logits when the head has them, named extras."""

    loss: Tensor
    logits: Tensor | None = None
    extras: Mapping[str, Tensor] = attrs.field(factory=dict)


class Head(nn.Module):
    """Embeddings (+ labels) -> :class:`HeadOutput`. Built as ``Head(embedding_size, num_classes, **params)``."""

    paper: ClassVar[str] = ""

    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        return unwrap_state_dict(checkpoint)


@attrs.frozen
class GeneratedBatch:
    """Samples drawn from a generator: ``images`` (canonical) or ``features``, with identity labels."""

    labels: Tensor
    images: Tensor | None = None
    features: Tensor | None = None
    modality: Tensor | None = None


class Generator(nn.Module):
    """Produces training material: images with identity labels (and modality) or embeddings.

    ``output`` is ``"image"`` or ``"feature"``. ``fit`` trains it on a dataset and returns final
    metrics; ``sample`` draws ``num_ids`` new identities with ``per_id`` samples each.
    """

    output: ClassVar[Literal["image", "feature"]] = "image"
    paper: ClassVar[str] = ""

    def fit(
        self,
        dataset: Dataset,
        *,
        steps: int,
        batch_size: int = 32,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
    ) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(
        self, num_ids: int, per_id: int, *, seed: int = 0, device: str = "cpu", batch_size: int = 64
    ) -> Iterator[GeneratedBatch]:  # pragma: no cover - interface
        """Yield batches; labels run 0..num_ids-1 in order, ``per_id`` samples each."""
        raise NotImplementedError

    def as_dataset(self, num_ids: int, per_id: int, *, seed: int = 0, device: str = "cpu") -> Dataset:
        """Draw everything once and wrap it as an in-memory Dataset any backbone can train on."""
        return TensorDataset.from_batches(self.sample(num_ids, per_id, seed=seed, device=device))

    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        return unwrap_state_dict(checkpoint)


class Dataset(torch.utils.data.Dataset):
    """Indexed samples (dicts, see module doc). ``num_classes`` counts identities (0 if unlabelled).

    ``labels`` gives every sample's label without decoding images (samplers and splits need it).
    ``modality`` gives every sample's modality the same way, or None: a dataset whose samples carry
    ``modality`` overrides this property. ``batch`` may be overridden to fetch many samples at once
    (the synthetic renderer does).
    """

    num_classes: int = 0

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def labels(self) -> Tensor:
        return torch.as_tensor([int(self[i]["label"]) for i in range(len(self))])

    @property
    def modality(self) -> Tensor | None:
        """Every sample's modality, an integer tensor ``[len(self)]`` with 0 = VIS and 1 = NIR
        (``MODALITIES[m]``), known without decoding any image; None when the samples carry no
        ``modality``. When it is not None, ``self[i]["modality"] == modality[i]``."""
        return None

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        from torch.utils.data import default_collate

        return default_collate([self[int(i)] for i in indices])


class TensorDataset(Dataset):
    """An in-memory dataset of images or features with labels (and optional modality)."""

    def __init__(
        self,
        labels: Tensor,
        images: Tensor | None = None,
        features: Tensor | None = None,
        modality: Tensor | None = None,
    ):
        data = images if images is not None else features
        if data is None or (images is not None and features is not None):
            raise ValueError("TensorDataset needs exactly one of images or features")
        self.data = data
        self.key = "image" if images is not None else "feature"
        self._labels = labels.long()
        self._modality = modality
        self.num_classes = int(self._labels.max()) + 1 if len(self._labels) else 0

    @classmethod
    def from_batches(cls, batches: Iterator[GeneratedBatch]) -> TensorDataset:
        parts = list(batches)

        def cat(name: str) -> Tensor | None:
            return (
                torch.cat([getattr(p, name) for p in parts]) if parts and getattr(parts[0], name) is not None else None
            )

        labels = torch.cat([p.labels for p in parts]) if parts else torch.empty(0, dtype=torch.long)
        return cls(labels, images=cat("images"), features=cat("features"), modality=cat("modality"))

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> Tensor:
        return self._labels

    @property
    def modality(self) -> Tensor | None:
        return self._modality

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {self.key: self.data[index], "label": int(self._labels[index])}
        if self._modality is not None:
            item["modality"] = int(self._modality[index])
        return item

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = {self.key: self.data[idx], "label": self._labels[idx]}
        if self._modality is not None:
            out["modality"] = self._modality[idx]
        return out


@attrs.frozen
class EvalResult:
    """A protocol's answer: flat metrics (JSON-able floats), artefacts (per-fold numbers, ROC points
    as arrays), and the convention the numbers follow (folds, thresholds, FAR rule)."""

    metrics: Mapping[str, float]
    artefacts: Mapping[str, Any] = attrs.field(factory=dict)
    convention: str = ""


#: Anything that maps canonical images to embeddings: a Backbone's ``embed`` or a custom function.
Embedder = Callable[[Tensor], Tensor]


class Protocol:
    """Evaluates a backbone (or an embedder) on a fixed set of data; states its convention.

    ``evaluate`` embeds what it needs in batches and returns an :class:`EvalResult`.
    ``evaluate_features`` scores precomputed features (keys as the protocol names its items).
    """

    convention: str = ""
    paper: ClassVar[str] = ""

    def evaluate(
        self, model: Backbone | Embedder, *, device: str = "cpu", batch_size: int = 64, progress: bool = False
    ) -> EvalResult:  # pragma: no cover - interface
        raise NotImplementedError

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} cannot score precomputed features")


def unwrap_state_dict(
    checkpoint: Mapping[str, Any], key: str = "state_dict", prefixes: Sequence[str] = ("module.",)
) -> dict[str, Tensor]:
    """Take ``checkpoint[key]`` when present and strip DataParallel/DDP prefixes from every key."""
    state = checkpoint.get(key, checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint has no state dict (got {type(state).__name__})")
    out = {}
    for name, value in state.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value if isinstance(value, Tensor) else torch.as_tensor(value)
    return out


__all__ = [
    "MODALITIES",
    "COLORS",
    "InputSpec",
    "Backbone",
    "Head",
    "HeadOutput",
    "Generator",
    "GeneratedBatch",
    "Dataset",
    "TensorDataset",
    "Protocol",
    "EvalResult",
    "Embedder",
    "Detector",
    "Detections",
    "unwrap_state_dict",
]
