"""The interfaces every facerec component implements, and the small value types they exchange.

Third parties implement these; keep them small and stable. Conventions shared by all components:

* Images travel between components as float tensors ``[B, 3, H, W]``, RGB, values in ``[0, 1]``
  ("canonical images"). A backbone's :class:`InputSpec` turns them into what the network wants
  (size, gray/BGR, scale, mean/std) with :meth:`InputSpec.prepare`, so pipelines are derived from
  the model and never guessed.
* Samples are plain dicts so that torch's default collate batches them: ``image`` (canonical image
  ``[3, H, W]``) or ``feature`` (``[D]``), ``label`` (int, -1 when unknown), and optional metadata
  ``modality`` (0 = VIS, 1 = NIR), ``resolution`` (int pixels), ``pose`` (yaw degrees).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor, nn

from ._version import API_VERSION  # noqa: F401  (plugins declare FACEREC_API = 1 in their package)

MODALITIES = ("VIS", "NIR")

Color = Literal["RGB", "BGR", "GRAY"]


COLORS = ("RGB", "BGR", "GRAY")


def _spec_error(message: str) -> Exception:
    from .errors import ParameterError

    return ParameterError(f"InputSpec: {message}")


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _spec_error(f"expected a number or a sequence of numbers, got {value!r}") from None
    return out


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
        if int(h) != h or int(w) != w:
            raise ValueError
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise _spec_error(f"size must be an int or (height, width) ints, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise _spec_error(f"size must be positive, got {(h, w)}")
    return (h, w)


def _check_spec(spec: InputSpec) -> None:
    """Every field on its own, then how they fit together (mean/std length against the channels)."""
    import math

    if spec.color not in COLORS:
        raise _spec_error(f"color must be exactly one of {', '.join(COLORS)}, got {spec.color!r}")
    if not (isinstance(spec.scale, (int, float)) and math.isfinite(spec.scale) and spec.scale > 0):
        raise _spec_error(f"scale must be a positive number, got {spec.scale!r}")
    for name, values in (("mean", spec.mean), ("std", spec.std)):
        if len(values) not in {1, spec.channels}:
            takes = "1" if spec.channels == 1 else f"1 or {spec.channels}"
            raise _spec_error(f"{name} has {len(values)} values; a {spec.color} input takes {takes}")
        if not all(math.isfinite(v) for v in values):
            raise _spec_error(f"{name} must be finite, got {values}")
    if not all(v > 0 for v in spec.std):
        raise _spec_error(f"std must be positive, got {spec.std}")
    if spec.resize is not None:
        if isinstance(spec.resize, bool) or not isinstance(spec.resize, int) or spec.resize < max(spec.size):
            raise _spec_error(f"resize (the shorter side before the centre crop) must be an int >= the input size "
                              f"{max(spec.size)}, got {spec.resize!r}")
    if not isinstance(spec.template, str) or not spec.template.strip():
        raise _spec_error(f"template must name a registered alignment template, got {spec.template!r}")


@attrs.frozen
class InputSpec:
    """What a backbone expects: ``x = (resize_crop(to_color(img01)) * scale - mean) / std``.

    ``img01`` is the canonical image (RGB, values in [0, 1]). ``size`` is the network input (H, W).
    ``color`` is exactly ``"RGB"``, ``"BGR"`` (channels reversed) or ``"GRAY"`` (one channel, ITU-R 601
    luma). ``scale`` multiplies first (255 for networks trained on 0-255 pixels); ``mean`` and ``std``
    hold 1 value or one per channel, in the network's channel order; ``std`` is positive. ``resize``
    optionally resizes the shorter side first and then centre-crops ``size`` (VGGFace2: 256 then 224;
    LightCNN: 144 then 128). ``template`` names the registered 5-point alignment template the weights
    were trained with (``facerec.data.align``); data aligned to another template is warped to it.
    Every field is checked on construction; the template's name is resolved at first use
    (:meth:`alignment`), since plugins that register templates may load later.
    """

    size: tuple[int, int] = attrs.field(converter=_size)
    color: Color = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = attrs.field(default=(0.0,), converter=_floats)
    std: tuple[float, ...] = attrs.field(default=(1.0,), converter=_floats)
    resize: int | None = None
    template: str = "arcface112"

    def __attrs_post_init__(self) -> None:
        _check_spec(self)

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @property
    def canonical_size(self) -> int:
        """Side of the square canonical image data should be rendered/loaded at for this model."""
        return self.resize if self.resize is not None else max(self.size)

    def alignment(self):  # -> facerec.data.align.Template
        """The registered template named by ``template`` (one-line error naming the known ones)."""
        from .data.align import get_template

        return get_template(self.template)

    def prepare(self, images: Tensor) -> Tensor:
        """Canonical images ``[B, 3, H, W]`` RGB in [0, 1] -> network input, batched, on any device."""
        import torch.nn.functional as F

        x = images.float()
        if x.shape[1] == 1 and self.color != "GRAY":
            x = x.expand(-1, 3, -1, -1)
        h, w = self.size
        if self.resize is not None:
            short = min(x.shape[-2:])
            if short != self.resize:
                scale = self.resize / short
                new = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
                x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            x = x[..., top : top + h, left : left + w]
        elif tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if self.color == "GRAY":
            if x.shape[1] == 3:
                weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                x = (x * weights).sum(1, keepdim=True)
        elif self.color == "BGR":
            x = x.flip(1)
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x * self.scale - mean) / std


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

    def fit(self, dataset: Dataset, *, steps: int, batch_size: int = 32, device: str = "cpu",
            seed: int = 0, progress: bool = False) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, num_ids: int, per_id: int, *, seed: int = 0, device: str = "cpu",
               batch_size: int = 64) -> Iterator[GeneratedBatch]:  # pragma: no cover - interface
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
    ``batch`` may be overridden to fetch many samples at once (the synthetic renderer does).
    """

    num_classes: int = 0

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def labels(self) -> Tensor:
        return torch.as_tensor([int(self[i]["label"]) for i in range(len(self))])

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        from torch.utils.data import default_collate

        return default_collate([self[int(i)] for i in indices])


class TensorDataset(Dataset):
    """An in-memory dataset of images or features with labels (and optional modality)."""

    def __init__(self, labels: Tensor, images: Tensor | None = None, features: Tensor | None = None,
                 modality: Tensor | None = None):
        data = images if images is not None else features
        if data is None or (images is not None and features is not None):
            raise ValueError("TensorDataset needs exactly one of images or features")
        self.data = data
        self.key = "image" if images is not None else "feature"
        self._labels = labels.long()
        self.modality = modality
        self.num_classes = int(self._labels.max()) + 1 if len(self._labels) else 0

    @classmethod
    def from_batches(cls, batches: Iterator[GeneratedBatch]) -> TensorDataset:
        parts = list(batches)
        cat = lambda name: (torch.cat([getattr(p, name) for p in parts])  # noqa: E731
                            if parts and getattr(parts[0], name) is not None else None)
        labels = torch.cat([p.labels for p in parts]) if parts else torch.empty(0, dtype=torch.long)
        return cls(labels, images=cat("images"), features=cat("features"), modality=cat("modality"))

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> Tensor:
        return self._labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {self.key: self.data[index], "label": int(self._labels[index])}
        if self.modality is not None:
            item["modality"] = int(self.modality[index])
        return item

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = {self.key: self.data[idx], "label": self._labels[idx]}
        if self.modality is not None:
            out["modality"] = self.modality[idx]
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

    convention: str = ""  # a class's, or an instance's (one that wraps other protocols states theirs)
    paper: ClassVar[str] = ""

    def evaluate(self, model: Backbone | Embedder, *, device: str = "cpu", batch_size: int = 64,
                 progress: bool = False) -> EvalResult:  # pragma: no cover - interface
        raise NotImplementedError

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} cannot score precomputed features")


def _float_tensor(value: Any) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32)


@attrs.frozen(eq=False)  # tensors have no single truth value: compare fields explicitly
class Detections:
    """The faces a :class:`Detector` found in one image, ``K`` of them, by descending score.

    ``boxes`` ``[K, 4]`` (x1, y1, x2, y2) and ``landmarks`` ``[K, 5, 2]`` (x, y) are pixels of the
    image in ``facerec.data.align``'s convention: pixel centres at integers, landmarks in its order
    (left eye, right eye, nose tip, left mouth corner, right mouth corner, as seen in the image);
    boxes are in the same frame, as the detector draws them (box conventions of detectors differ
    by about a pixel; alignment uses the landmarks). ``scores`` ``[K]`` are the detector's confidences.
    """

    boxes: Tensor = attrs.field(converter=_float_tensor)
    scores: Tensor = attrs.field(converter=_float_tensor)
    landmarks: Tensor = attrs.field(converter=_float_tensor)

    def __attrs_post_init__(self) -> None:
        k = self.scores.shape[0] if self.scores.dim() == 1 else -1
        if (k < 0 or tuple(self.boxes.shape) != (k, 4) or tuple(self.landmarks.shape) != (k, 5, 2)):
            raise ValueError(f"Detections need boxes [K, 4], scores [K] and landmarks [K, 5, 2]; got "
                             f"{tuple(self.boxes.shape)}, {tuple(self.scores.shape)}, {tuple(self.landmarks.shape)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def areas(self) -> Tensor:
        return (self.boxes[:, 2] - self.boxes[:, 0]).clamp_min(0) * (self.boxes[:, 3] - self.boxes[:, 1]).clamp_min(0)

    def select(self, index: Tensor | Sequence[int] | slice) -> Detections:
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])

    def largest(self) -> Detections:
        """The face with the largest box (none when there is none)."""
        return self.select(self.areas.argmax().view(1)) if len(self) else self


class Detector:
    """Image batch -> faces: boxes, scores and 5 landmarks per image (:class:`Detections`).

    ``detect`` takes canonical images ``[B, 3, H, W]`` (RGB, float in [0, 1]; uint8 0..255 is
    accepted too) or a list of ``[3, H, W]`` images of different sizes, and returns one
    :class:`Detections` per image. Implementations write ``detect_batch`` for same-sized images;
    ``detect`` groups a list by size and batches each group. By convention a detector's factory
    accepts ``min_size`` (smallest face side in pixels) and ``weights`` (a file, folder or card
    name), which ``facerun data align`` passes from ``--min-size`` and ``--detector-weights``.
    """

    paper: ClassVar[str] = ""

    def detect_batch(self, images: Tensor) -> list[Detections]:  # pragma: no cover - interface
        raise NotImplementedError

    def detect(self, images: Tensor | Sequence[Tensor]) -> list[Detections]:
        if isinstance(images, Tensor) and images.dim() == 4:
            return self.detect_batch(_check_images(images))
        if isinstance(images, Tensor) and images.dim() == 3:
            raise ValueError("detect takes a batch [B, 3, H, W] or a list of [3, H, W] images; "
                             "got one image [3, H, W] (add a batch dimension)")
        images = list(images)
        for img in images:
            if not isinstance(img, Tensor) or img.dim() != 3:
                raise ValueError(f"detect takes [3, H, W] images in a list, got {getattr(img, 'shape', type(img))}")
        out: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault((tuple(img.shape), img.dtype), []).append(i)
        for members in groups.values():
            found = self.detect_batch(_check_images(torch.stack([images[i] for i in members])))
            for i, det in zip(members, found):
                out[i] = det
        return [d if d is not None else Detections.empty() for d in out]


def _check_images(images: Tensor) -> Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"detectors take RGB images [B, 3, H, W], got {tuple(images.shape)}")
    return images


def unwrap_state_dict(checkpoint: Mapping[str, Any], key: str = "state_dict",
                      prefixes: Sequence[str] = ("module.",)) -> dict[str, Tensor]:
    """Take ``checkpoint[key]`` when present and strip DataParallel/DDP prefixes from every key."""
    state = checkpoint.get(key, checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint has no state dict (got {type(state).__name__})")
    out = {}
    for name, value in state.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = value if isinstance(value, Tensor) else torch.as_tensor(value)
    return out


__all__ = ["MODALITIES", "COLORS", "InputSpec", "Backbone", "Head", "HeadOutput", "Generator", "GeneratedBatch",
           "Dataset", "TensorDataset", "Protocol", "EvalResult", "Embedder", "Detector", "Detections",
           "unwrap_state_dict"]
