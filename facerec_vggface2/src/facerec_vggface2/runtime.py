"""The three modes of the original demo.py (extract, test, train) as library functions; commands.py wraps them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.api import InputSpec
from facerec.errors import ParameterError, WeightsError

from .data import VGGFace2List
from .models import ARCHS, MEAN_BGR, N_TRAIN_IDENTITIES, _VGGFace2Net

#: The original's --arch_type values; "resnet" in the name selects ResNet-50, anything else SE-ResNet-50.
ARCH_TYPES = ("resnet50_ft", "senet50_ft", "resnet50_scratch", "senet50_scratch")


def arch_class(arch: str) -> type[_VGGFace2Net]:
    """``resnet50_ft`` / ``senet50_scratch`` / ``vggface2-resnet50`` / ``resnet50`` ... -> model class."""
    key = arch.lower().removeprefix("vggface2-")
    for name, cls in ARCHS.items():
        if key == name or key in (f"{name}_ft", f"{name}_scratch"):
            return cls
    raise ParameterError(
        f"unknown --arch {arch!r}; use one of {', '.join(ARCH_TYPES)} (or vggface2-resnet50 / vggface2-senet50)"
    )


def _classes_in(weights: Path) -> int:
    """Width of the classifier stored in a weights file (safetensors header only; released files: 8631)."""
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                if "fc.weight" not in f.keys():
                    return 0
                return int(f.get_slice("fc.weight").get_shape()[0])
        except Exception as exc:  # a damaged header: let load_weights report it properly
            if isinstance(exc, OSError):
                raise WeightsError(f"cannot read weights file {weights}: {exc}") from None
            return N_TRAIN_IDENTITIES
    return N_TRAIN_IDENTITIES


def build_model(arch: str, weights: str | None, device: str = "cpu") -> _VGGFace2Net:
    """The backbone of ``arch`` with ``weights`` (a released .pkl, a resume .pth.tar, a facerec safetensors
    file or a registered weight-card name) loaded strictly; random weights when ``weights`` is None."""
    import facerec

    cls = arch_class(arch)
    if weights is None:
        return cls().to(device)
    from facerec.weights import resolve

    path = resolve(weights)  # a file, or a registered card name (pulled into the cache, verified)
    model = cls(num_classes=_classes_in(path))
    facerec.load_weights(model, path)
    return model.to(device)


def loader(
    dataset: VGGFace2List, batch_size: int, workers: int, shuffle: bool = False, seed: int = 0
) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=gen,
        drop_last=shuffle,
        persistent_workers=False,
    )


def _progress(done: int, total: int, start: float, label: str, enabled: bool) -> None:
    if not enabled:
        return
    rate = done / max(time.perf_counter() - start, 1e-9)
    eta = (total - done) / max(rate, 1e-9)
    print(f"\r{label} {done}/{total}  {rate:.1f} img/s  ETA {eta:.0f}s", end="" if done < total else "\n", flush=True)


#: ``flip`` modes of :func:`extract_features`: none; the mean of the image's and its mirror's features;
#: the mirror's alone (the original's ``--horizontal_flip``).
FLIP_MODES = ("none", "average", "flipped")


@torch.inference_mode()
def extract_features(
    model: _VGGFace2Net,
    dataset: VGGFace2List,
    *,
    batch_size: int = 32,
    workers: int = 0,
    flip: bool | str = False,
    l2: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Features of every list entry, in list order: [N, 2048] float32. ``flip``: ``"average"`` (or True)
    averages with the mirrored image, ``"flipped"`` gives the mirrored image's alone; ``l2`` normalises."""
    mode = {True: "average", False: "none"}.get(flip, flip) if isinstance(flip, bool) else flip
    if mode not in FLIP_MODES:
        raise ParameterError(f"flip must be one of {', '.join(FLIP_MODES)}, got {flip!r}")
    model.eval()
    out, done, start = [], 0, time.perf_counter()
    for batch in loader(dataset, batch_size, workers):
        x = model.input_spec.prepare(batch["image"].to(device))
        if mode == "flipped":
            f = model(x.flip(-1))
        else:
            f = model(x)
            if mode == "average":
                f = (f + model(x.flip(-1))) / 2
        out.append((F.normalize(f, dim=1) if l2 else f).float().cpu())
        done += len(f)
        _progress(done, len(dataset), start, "extract", progress)
    return torch.cat(out)


def save_features(
    path: str | Path, features: Tensor, dataset: VGGFace2List, *, arch: str, flip: bool | str, l2: bool
) -> Path:
    """One safetensors file: ``features`` [N, D] and ``labels`` [N]; the list paths in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    meta = {
        "paths": json.dumps(dataset.paths),
        "arch": arch,
        "flip": str(flip),
        "l2": str(l2),
        "format": "facerec-vggface2-features/1",
    }
    save_file({"features": features.contiguous(), "labels": dataset.labels.clone()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


@torch.inference_mode()
def evaluate_topk(
    model: _VGGFace2Net,
    dataset: VGGFace2List,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 and CE over the classifier for images of training identities; images of test-split
    identities (Flag 0 in identity_meta.csv, labels >= the number of training identities) are counted and
    reported instead of crashing the loss as in the original."""
    if model.fc is None:
        raise ParameterError("test needs a model with a classifier (weights with fc)")
    model.eval()
    width = model.fc.out_features
    n_train = dataset.num_train_classes
    if n_train > width:
        raise ParameterError(
            f"the classifier has {width} outputs but the meta file lists {n_train} training "
            "identities; use the meta file the weights were trained with"
        )
    n = loss_sum = top1 = top5 = skipped = 0
    skipped_ids: set[int] = set()
    start = time.perf_counter()
    done = 0
    for batch in loader(dataset, batch_size, workers):
        labels = batch["label"].to(device)
        logits = model.logits(model.input_spec.prepare(batch["image"].to(device)))
        known = labels < n_train  # test-split identities (Flag 0) have no classifier output
        skipped += int((~known).sum())
        skipped_ids.update(labels[~known].tolist())
        if known.any():
            lg, lb = logits[known], labels[known]
            loss_sum += float(F.cross_entropy(lg, lb, reduction="sum"))
            k = min(5, width)
            hit = lg.topk(k, dim=1).indices == lb[:, None]
            top1 += int(hit[:, 0].sum())
            top5 += int(hit.any(1).sum())
            n += len(lb)
        done += len(labels)
        _progress(done, len(dataset), start, "test", progress)
    # With no image of a training identity there is no accuracy: None (JSON null), never NaN (invalid JSON).
    return {
        "images": n,
        "top1": top1 / n if n else None,
        "top5": top5 / n if n else None,
        "loss": loss_sum / n if n else None,
        "skipped_test_split_images": skipped,
        "skipped_test_split_identities": len(skipped_ids),
        "classifier_classes": width,
    }


def _train_spec() -> InputSpec:
    # Training crops 224 out of the 256 canonical image itself, so its spec has no resize step.
    return InputSpec(size=224, color="BGR", scale=255.0, mean=MEAN_BGR, std=1.0)


def augment(images: Tensor, generator: torch.Generator, size: int = 224) -> Tensor:
    """The original's train transform on canonical 256 images: RandomCrop(224) + RandomGrayscale(p=0.2),
    one crop offset per image (gathered with index grids, no Python loop over images)."""
    b, c, h, w = images.shape
    span = torch.arange(size)
    top = torch.randint(0, h - size + 1, (b,), generator=generator)
    left = torch.randint(0, w - size + 1, (b,), generator=generator)
    rows = (top[:, None] + span)[:, None, :, None].expand(b, c, size, w)
    cols = (left[:, None] + span)[:, None, None, :].expand(b, c, size, size)
    crop = images.gather(2, rows).gather(3, cols)
    gray = (torch.rand(b, generator=generator) < 0.2).view(b, 1, 1, 1)
    luma = (crop * crop.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return torch.where(gray, luma.expand_as(crop), crop)


def _order(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation drawn from (seed, epoch) alone, so a resumed run can rebuild
    any epoch and skip to any step without replaying the data; the last partial batch is dropped."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def run_settings(
    dataset: VGGFace2List, *, mode: str, batch_size: int, seed: int, lr: float, backbone_lr: float
) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (stored in the checkpoint)."""
    return {
        "mode": mode,
        "batch_size": batch_size,
        "classes": dataset.num_train_classes,
        "images": len(dataset),
        "seed": seed,
        "lr": lr,
        "backbone_lr": backbone_lr,
    }


def check_resumable(checkpoint: str | Path | None, settings: dict[str, Any]) -> None:
    """One-line error unless ``checkpoint`` exists and was written with the same ``settings``."""
    from facerec.engine.checkpoint import read_metadata

    if checkpoint is None or not Path(checkpoint).is_file():
        raise ParameterError(f"--resume: no checkpoint at {checkpoint} (train into this --out first)")
    saved = json.loads(read_metadata(checkpoint).get("meta", "{}"))
    for key, value in settings.items():
        if saved.get(key) != value:
            flag = "--" + key.replace("_", "-") if key not in ("classes", "images") else "the training list"
            raise ParameterError(
                f"--resume: the run in {Path(checkpoint).parent} used {key} {saved.get(key)!r}, "
                f"now {value!r} ({flag} must stay the same to continue it)"
            )


def train_classifier(
    model: _VGGFace2Net,
    dataset: VGGFace2List,
    *,
    mode: str = "fc",
    steps: int = 100,
    batch_size: int = 32,
    lr: float = 0.1,
    backbone_lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    step_size: int = 1_000_000,
    gamma: float = 0.1,
    workers: int = 0,
    device: str = "cpu",
    seed: int = 1337,
    log: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> dict[str, float]:
    """Train as the original (config 1): SGD, fc.weight at ``lr``, fc.bias at 2*lr without weight decay,
    StepLR per iteration. ``mode="fc"`` trains the classifier only with the backbone frozen in eval mode (the
    original left it in train mode, so BN statistics drifted); ``mode="full"`` trains everything.

    ``checkpoint``: a facerec training checkpoint written every ``checkpoint_every`` steps and at the end;
    ``resume=True`` continues from it exactly (same batches, augmentation and optimizer state as an
    uninterrupted run; ``steps`` may be raised to train longer). The data order and each step's
    augmentation are drawn from (seed, epoch) and (seed, step), so nothing else needs saving."""
    from facerec.engine.checkpoint import load_checkpoint, save_checkpoint

    if mode not in ("fc", "full"):
        raise ParameterError(f"--mode must be 'fc' or 'full', got {mode!r}")
    if steps < 1:
        raise ParameterError(f"--steps must be >= 1, got {steps}")
    if len(dataset) < batch_size:
        raise ParameterError(f"--batch-size {batch_size} is larger than the training list ({len(dataset)} images)")
    settings = run_settings(dataset, mode=mode, batch_size=batch_size, seed=seed, lr=lr, backbone_lr=backbone_lr)
    done = 0
    if resume:
        check_resumable(checkpoint, settings)
    torch.manual_seed(seed)
    model.fc = nn.Linear(2048, dataset.num_train_classes).to(device)  # the original reset fc after loading
    model.num_classes = dataset.num_train_classes
    groups = [
        {"params": [model.fc.weight], "lr": lr, "weight_decay": weight_decay, "base_lr": lr},
        {"params": [model.fc.bias], "lr": 2 * lr, "weight_decay": 0.0, "base_lr": 2 * lr},
    ]
    body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    if mode == "full":
        groups.append({"params": body, "lr": backbone_lr, "weight_decay": weight_decay, "base_lr": backbone_lr})
    for p in body:
        p.requires_grad_(mode == "full")
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if resume:
        done = int(load_checkpoint(checkpoint, {"model": model}, optimizer=opt)["step"])
    spec = _train_spec()
    per_epoch = len(dataset) // batch_size
    step, loss_avg, acc_avg = done, None, None
    start = time.perf_counter()

    def save() -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"model": model}, step=step, optimizer=opt, meta=settings)

    while step < steps:
        epoch, skip = divmod(step, per_epoch)
        order = _order(len(dataset), batch_size, seed, epoch)[skip:]
        batches = torch.utils.data.DataLoader(dataset, batch_sampler=order, num_workers=workers)
        for batch in batches:
            labels = batch["label"].to(device)
            if bool((labels >= model.fc.out_features).any()):
                raise ParameterError("training list contains test-split identities; train on Flag=1 identities")
            for g in opt.param_groups:  # StepLR, per iteration
                g["lr"] = g["base_lr"] * gamma ** (step // step_size)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            x = spec.prepare(augment(batch["image"], gen).to(device))
            if mode == "fc":
                model.eval()
                with torch.no_grad():
                    feats = model(x)
            else:
                model.train()
                feats = model(x)
            logits = model.fc(feats)
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            acc = float((logits.argmax(1) == labels).float().mean())
            loss_avg, acc_avg = float(loss), acc
            if log is not None:
                log(
                    {
                        "step": step,
                        "loss": float(loss),
                        "top1": acc,
                        "lr": opt.param_groups[0]["lr"],
                        "items_per_s": (step - done) * batch_size / (time.perf_counter() - start),
                    }
                )
            if checkpoint_every and step % checkpoint_every == 0 and step < steps:
                save()
            if step >= steps:
                break
    save()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return {"steps": step, "resumed_from": done, "loss": loss_avg, "train_top1": acc_avg}
