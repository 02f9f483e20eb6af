"""Face detection: a detector's answer for one image (:class:`Detections`) and the :class:`Detector` interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor


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
        if k < 0 or tuple(self.boxes.shape) != (k, 4) or tuple(self.landmarks.shape) != (k, 5, 2):
            raise ValueError(
                f"Detections need boxes [K, 4], scores [K] and landmarks [K, 5, 2]; got "
                f"{tuple(self.boxes.shape)}, {tuple(self.scores.shape)}, {tuple(self.landmarks.shape)}"
            )

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
            raise ValueError(
                "detect takes a batch [B, 3, H, W] or a list of [3, H, W] images; "
                "got one image [3, H, W] (add a batch dimension)"
            )
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
