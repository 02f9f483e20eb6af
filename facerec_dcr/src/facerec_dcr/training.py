"""The per-step losses of the DCR stages, for core's Trainer (``loss_fn(batch, modules, step)``).

* trunk stage: the HR batch and its LR versions (see :mod:`.augment`: batched on the device, or the
  original's per-sample PIL path; ``aug_plus`` = the README's ``--aug-plus``) are concatenated into one
  batch, labels repeated, trunk loss on trunk outputs; branches frozen.
* branch stage: the trunk (frozen by default) embeds every resolution; each branch gets its
  resolution's embeddings; CM loss. ``trunk_bn="frozen"`` keeps trunk BN in eval mode (a frozen
  trunk really is frozen); ``"train"`` reproduces the original (per-scale forwards, BN statistics
  of each scale, running stats drifting).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from facerec.errors import FacerecError, ParameterError
from torch import Tensor, nn

from .augment import check_lowres, make_views
from .model import _DCR


def _core(net: nn.Module) -> _DCR:
    return getattr(net, "module", net)  # DDP wraps the model


def _labels(batch: Mapping[str, Any], num_classes: int, device: torch.device) -> Tensor:
    labels = torch.as_tensor(batch["label"]).long().to(device)
    if labels.numel() and (int(labels.max()) >= num_classes or int(labels.min()) < 0):
        raise FacerecError(f"label {int(labels.max())} is out of range for a DCR model with {num_classes} classes")
    return labels


def trunk_loss_fn(
    scales: Sequence[int], num_classes: int, augment: bool = True, *, lowres: str = "tensor", aug_plus: bool = False
):
    """Trunk stage (also SCface fine-tuning with ``scales=()``: the images are already low-res)."""
    check_lowres(lowres)

    def loss_fn(batch: Mapping[str, Any], modules: Mapping[str, nn.Module], step: int) -> dict[str, Tensor]:
        net = modules["backbone"]
        images = batch["image"].float()
        labels = _labels(batch, num_classes, images.device)
        views = make_views(images, scales, lowres=lowres, augment=augment, plus=aug_plus)
        x = _core(net).input_spec.prepare(torch.cat(views))
        emb, logits = net(x, head="trunk")
        y = labels.repeat(len(views))
        out = dict(modules["criterion"](emb, logits, y))
        out["acc"] = (logits.detach().argmax(1) == y).float().mean()
        return out

    return loss_fn


def branch_loss_fn(
    scales: Sequence[int],
    num_classes: int,
    *,
    train_trunk: bool = False,
    trunk_bn: str = "frozen",
    augment: bool = True,
    lowres: str = "tensor",
    aug_plus: bool = False,
):
    if trunk_bn not in ("frozen", "train"):
        raise ParameterError(f"recipe.trunk_bn must be 'frozen' or 'train' (the original), got {trunk_bn!r}")
    check_lowres(lowres)

    def loss_fn(batch: Mapping[str, Any], modules: Mapping[str, nn.Module], step: int) -> dict[str, Tensor]:
        net = modules["backbone"]
        model = _core(net)
        if trunk_bn == "frozen":
            model.trunk.eval()
        images = batch["image"].float()
        labels = _labels(batch, num_classes, images.device)
        views = make_views(images, scales, lowres=lowres, augment=augment, plus=aug_plus)
        grad = contextlib.nullcontext() if train_trunk else torch.no_grad()
        with grad:
            if trunk_bn == "train":  # the original: one forward per scale, BN on that scale's batch
                trunk = [net(model.input_spec.prepare(v)) for v in views]
            else:
                trunk = list(net(model.input_spec.prepare(torch.cat(views))).chunk(len(views)))
        index, inputs = [], []
        for k, s in enumerate(scales):
            hr, lr = model.hr_branch(s), model.lr_branch(s)
            if hr not in index:
                index.append(hr)
                inputs.append(trunk[0])
            index.append(lr)
            inputs.append(trunk[k + 1])
        outs = net(inputs, head="branches", index=index)
        emb = {i: e for i, (e, _) in zip(index, outs)}
        logits = {i: lg for i, (_, lg) in zip(index, outs)}
        out = dict(modules["criterion"](emb, logits, labels))
        out["acc"] = torch.stack([(lg.detach().argmax(1) == labels).float().mean() for lg in logits.values()]).mean()
        return out

    return loss_fn


def coupling_pairs(model: _DCR) -> list[tuple[int, int]]:
    return [(model.hr_branch(s), model.lr_branch(s)) for s in model.scales]


def read_model_state(path: str | Path) -> dict[str, Tensor]:
    """A DCR state dict from a facerec training checkpoint, a saved backbone, or an original file."""
    from facerec.engine.checkpoint import module_state
    from facerec.weights import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FacerecError(f"recipe.init: no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "facerec_checkpoint" in meta:
            return module_state(path, "backbone")
        return dict(read_checkpoint(path))
    return _DCR.convert_checkpoint(read_checkpoint(path))


def load_init(model: _DCR, path: str | Path) -> list[str]:
    """Load ``path`` into ``model`` strictly, except classifiers of another class count, which stay
    freshly initialised (fine-tuning on other identities). Returns the re-initialised keys."""
    from facerec.weights import strict_load

    state = read_model_state(path)
    own = model.state_dict()
    fresh = [
        k
        for k in own
        if k.endswith((".fc2.weight", ".fc2.bias")) and k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    for k in fresh:
        state[k] = own[k]
    strict_load(model, state, str(path))
    return fresh
