"""AttrOP: steer identity vectors towards a quality / yaw target by gradient steps on the vector.

Unlike the original ``gen_image`` (an unbounded loop on batch-mean thresholds that re-decodes with a
fresh mask at the end, unchecked), this runs at most ``max_iters`` steps, accepts each sample as
soon as *it* meets the constraints, and returns exactly the image that was checked. Estimators are
frozen, so only the vector receives gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .estimators import Embedder, PoseEstimator, QualityEstimator, cosine_distance


@attrs.frozen
class AttrTargets:
    """Targets and acceptance thresholds (the original's: id 0.3, quality 1, pose 5 degrees)."""

    quality: float | None = 27.0
    yaw: float | None = None
    max_iters: int = 5
    lr: float = 0.1
    id_threshold: float = 0.3
    quality_threshold: float = 1.0
    pose_threshold: float = 5.0
    id_weight: float = 100.0


@attrs.frozen
class AttrResult:
    images: Tensor  # [B,3,H,W] in [-1,1], the checked images
    vectors: Tensor  # [B,D] the vectors that produced them
    accepted: Tensor  # [B] bool: met every constraint within max_iters
    iterations: Tensor  # [B] steps taken


class _Adam:
    """Adam (torch defaults) on one tensor; torch.optim would import torch._dynamo (seconds) for this."""

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps = param, lr, betas[0], betas[1], eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        self.t += 1
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        denom = (self.v / (1 - self.b2**self.t)).sqrt_().add_(self.eps)
        self.p.addcdiv_(self.m, denom, value=-self.lr / (1 - self.b1**self.t))


def optimise_attributes(
    decode: Callable[[Tensor], Tensor],
    rep: Tensor,
    targets: AttrTargets,
    *,
    identity: Embedder,
    quality: QualityEstimator | None = None,
    pose: PoseEstimator | None = None,
    class_rep: Tensor | None = None,
) -> AttrResult:
    """``decode(v)`` -> images in [-1,1] (already clipped). Samples that never pass keep their last try."""
    ref = (class_rep if class_rep is not None else rep).detach()
    v = rep.detach().clone().requires_grad_(True)
    opt = _Adam(v, lr=targets.lr)
    b = len(rep)
    out_img: Tensor | None = None
    out_vec = rep.detach().clone()
    accepted = torch.zeros(b, dtype=torch.bool, device=rep.device)
    iters = torch.zeros(b, dtype=torch.long, device=rep.device)
    for step in range(targets.max_iters + 1):
        active = (~accepted).nonzero().squeeze(1)
        if len(active) == 0:
            break
        img = decode(v[active])
        if out_img is None:
            out_img = img.detach().new_zeros((b, *img.shape[1:]))
        id_loss = cosine_distance(identity(img), ref[active])
        loss = targets.id_weight * id_loss
        ok = id_loss <= targets.id_threshold
        if quality is not None and targets.quality is not None:
            q_loss = torch.relu(targets.quality - quality(img))
            loss, ok = loss + q_loss, ok & (q_loss <= targets.quality_threshold)
        if pose is not None and targets.yaw is not None:
            p_loss = (targets.yaw - pose(img)[:, 1].clamp(-90, 90).abs()).abs()
            loss, ok = loss + p_loss, ok & (p_loss <= targets.pose_threshold)
        # Record this try for every active sample; accepted ones are frozen from now on.
        out_img[active] = img.detach()
        out_vec[active] = v.detach()[active]
        iters[active] = step
        accepted[active[ok]] = True
        if step == targets.max_iters or bool(ok.all()):
            break
        (grad,) = torch.autograd.grad(loss.sum(), v)
        opt.step(grad)
    assert out_img is not None
    return AttrResult(out_img, out_vec, accepted, iters)
