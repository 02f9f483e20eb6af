"""MTCNN's three stages on a batch of same-sized images: pyramid proposals (P-Net), refinement
(R-Net), output boxes and landmarks (O-Net), with the box arithmetic between them.

Coordinates inside the cascade follow the released implementation (Matlab heritage): a box
``(x1, y1, x2, y2)`` covers the 0-based pixels ``trunc(x1) - 1 .. trunc(x2) - 1``; the sides of a box
are ``x2 - x1`` for P-Net calibration and squaring but ``x2 - x1 + 1`` for the R-/O-Net
calibration and the landmarks, as in the reference. The detector reports these coordinates
unshifted (see :meth:`facerec.data.detect.mtcnn.MTCNN.detect_batch` for why that is facerec's frame).

Everything is vectorised over boxes; the only loops run over pyramid scales, and over images where
a summed-area table or an NMS pass is per image.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from .nets import ONet, PNet, RNet
from .nms import nms
from .patches import Integrals, resized_patches

STRIDE, CELL = 2, 12
#: P-Net input pixels per call: large photos in large batches go through in pieces (same result).
PNET_PIXELS = 1 << 23


@attrs.define
class Candidates:
    """Boxes ``[N, 4]`` (cascade coordinates), scores ``[N]``, image of each box ``[N]``."""

    boxes: Tensor
    scores: Tensor
    image: Tensor

    def take(self, index: Tensor) -> Candidates:
        return Candidates(self.boxes[index], self.scores[index], self.image[index])

    def __len__(self) -> int:
        return self.boxes.shape[0]


def pyramid(height: int, width: int, min_size: float, factor: float) -> list[float]:
    """Scales at which a 12 px P-Net cell sees faces of ``min_size`` px and up (as the reference)."""
    m = 12.0 / min_size
    side = min(height, width) * m
    scales = []
    scale = m
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def normalise(pixels: Tensor) -> Tensor:
    """0..255 pixels -> the nets' input range (channels-last, the layout the nets run fastest in)."""
    return ((pixels - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def square(boxes: Tensor) -> Tensor:
    """Grow each box to a square about its centre (side = the longer of ``x2 - x1``, ``y2 - y1``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def calibrate(boxes: Tensor, offsets: Tensor, inclusive: bool) -> Tensor:
    """Apply regression offsets (fractions of the box sides)."""
    one = 1.0 if inclusive else 0.0
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * torch.stack([w, h, w, h], 1)


def regions(boxes: Tensor) -> Tensor:
    """Integer pixel ranges ``[x0, y0, x1, y1)`` the nets see for each box."""
    t = boxes.trunc().long()
    return torch.stack([t[:, 0] - 1, t[:, 1] - 1, t[:, 2], t[:, 3]], 1)


def _pnet_maps(pnet: PNet, images: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    b = images.shape[0]
    per_call = max(1, PNET_PIXELS // (size[0] * size[1]))
    probs, offsets = [], []
    for lo in range(0, b, per_call):
        x = normalise(F.interpolate(images[lo : lo + per_call], size=size, mode="area"))
        p, o = pnet(x)
        probs.append(p)
        offsets.append(o)
    return torch.cat(probs), torch.cat(offsets)


@torch.no_grad()
def propose(pnet: PNet, images: Tensor, scales: list[float], threshold: float) -> Candidates:
    """Stage 1: P-Net over the pyramid, NMS per scale (IoU 0.5) and across scales (0.7), calibrate, square."""
    _, _, h, w = images.shape
    boxes, scores, image, offsets = [], [], [], []
    for scale in scales:
        prob, off = _pnet_maps(pnet, images, (int(h * scale + 1), int(w * scale + 1)))
        idx, row, col = torch.nonzero(prob >= threshold, as_tuple=True)
        cells = torch.stack([col, row], 1).to(prob.dtype)
        b = torch.cat([((STRIDE * cells + 1) / scale).floor(), ((STRIDE * cells + CELL) / scale).floor()], 1)
        s = prob[idx, row, col]
        keep = nms(b, s, 0.5, idx)
        boxes.append(b[keep])
        scores.append(s[keep])
        image.append(idx[keep])
        offsets.append(off[idx[keep], :, row[keep], col[keep]])
    if not scales:  # the image is smaller than the smallest face searched
        return Candidates(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    cand = Candidates(torch.cat(boxes).cpu(), torch.cat(scores).cpu(), torch.cat(image).cpu())
    offsets_all = torch.cat(offsets).cpu()
    keep = nms(cand.boxes, cand.scores, 0.7, cand.image)
    cand, offsets_all = cand.take(keep), offsets_all[keep]
    cand.boxes = square(calibrate(cand.boxes, offsets_all, inclusive=False))
    return cand


def _patches(images: Integrals, cand: Candidates, size: int, border: str) -> Tensor:
    return normalise(resized_patches(images, cand.image, regions(cand.boxes), size, border))


@torch.no_grad()
def refine(rnet: RNet, images: Integrals, cand: Candidates, threshold: float, border: str) -> Candidates:
    """Stage 2: R-Net on 24 px patches, score threshold, NMS (IoU 0.7), calibrate, square."""
    if len(cand) == 0:
        return cand
    prob, off = rnet(_patches(images, cand, 24, border))
    prob, off = prob.cpu(), off.cpu()
    ok = prob > threshold
    cand = Candidates(cand.boxes[ok], prob[ok], cand.image[ok])
    off = off[ok]
    keep = nms(cand.boxes, cand.scores, 0.7, cand.image)
    cand, off = cand.take(keep), off[keep]
    cand.boxes = square(calibrate(cand.boxes, off, inclusive=True))
    return cand


@torch.no_grad()
def output(onet: ONet, images: Integrals, cand: Candidates, threshold: float, border: str) -> tuple[Candidates, Tensor]:
    """Stage 3: O-Net on 48 px patches: final scores, calibrated boxes, landmarks ``[N, 5, 2]``;
    NMS by intersection over the smaller box (0.7), as the reference."""
    if len(cand) == 0:
        return cand, torch.zeros(0, 5, 2)
    prob, off, pts = onet(_patches(images, cand, 48, border))
    prob, off, pts = prob.cpu(), off.cpu(), pts.cpu()
    ok = prob > threshold
    boxes, off, pts = cand.boxes[ok], off[ok], pts[ok]
    side = torch.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], 1)
    points = pts * side[:, None, :] + boxes[:, None, :2] - 1
    cand = Candidates(calibrate(boxes, off, inclusive=True), prob[ok], cand.image[ok])
    keep = nms(cand.boxes, cand.scores, 0.7, cand.image, mode="min", plus_one=True)
    return cand.take(keep), points[keep]
