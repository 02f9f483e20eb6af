"""DCR evaluation protocols on the real layouts: LFW low-resolution verification, SCface rank-1,
CASIA-WebFace and LFW retrieval precision@1.

The data root comes as ``data`` (``facerun eval --data ROOT``; ``root`` is accepted too). ``task``
is the original's ``--task``: ``V`` (HR image 1 vs image 2 at each LR scale) or ``IV`` (both images at
the same scale, "intra"), ``R`` (LR queries vs HR references) or ``IR`` (queries and references at the
same scale). Every protocol reports ``criterion``: the original's early-stopping criterion, the mean
over the evaluated resolutions (``branch_criterion`` for the coupled branches)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch
from facerec.api import Backbone, EvalResult, Protocol
from facerec.data.decode import read_image
from facerec.errors import DataError, ParameterError
from facerec.protocols.common import Progress
from PIL import Image
from torch import Tensor

from .data import CasiaWebFace, _sub, read_pair_list, scan_scface, scface_split
from .evaluation import HR, collect_pairs, criterion, embed_all, is_dcr, scface_metrics, verification_metrics
from .lowres import degrade, pil_multiscale, pil_to_tensor, _torchvision_resize_pil
from .model import DEFAULT_SCALES, PAPER
from .retrieval import precision_at_1


VERIFICATION_TASKS = ("V", "IV")
RETRIEVAL_TASKS = ("R", "IR")


def _root(data: str | os.PathLike | None, root: str | os.PathLike | None, name: str) -> str | os.PathLike:
    if data is not None and root is not None and Path(data) != Path(root):
        raise ParameterError(f"protocol {name}: give the data root once (--data / protocol.data), not also root=")
    if data is None and root is None:
        raise ParameterError(f"protocol {name} needs the DCR data root: --data ROOT (or protocol.data=ROOT)")
    return data if data is not None else root


def _task(task: str, allowed: tuple[str, ...], name: str) -> str:
    if task not in allowed:
        raise ParameterError(f"protocol {name}: task must be one of {', '.join(allowed)}, got {task!r}")
    return task


def _check_lowres(lowres: str) -> str:
    if lowres not in ("pil", "tensor"):
        raise ParameterError(f"lowres must be 'pil' (the original's exact path) or 'tensor' (batched), got {lowres!r}")
    return lowres


def _open_rgb(path: Path) -> Image.Image:
    from facerec.data.decode import decode_uint8, read_bytes

    u8 = decode_uint8(read_bytes(path), str(path))  # DataError naming the file when corrupt
    return Image.fromarray(u8.permute(1, 2, 0).numpy())


def multiscale_batch(
    paths: Sequence[Path], scales: Sequence[int], image_size: int, lowres: str, include_hr: bool = True
) -> tuple[Tensor, dict[str | int, Tensor]]:
    """Load images; return (HR [B,3,S,S], {scale: LR back at S px, 'hr': HR})."""
    if lowres == "pil":
        items = [pil_multiscale(_open_rgb(p), scales, image_size) for p in paths]
        hr = torch.stack([it["0"] for it in items])
        out: dict[str | int, Tensor] = {
            s: torch.stack([it[str(k)] for it in items]) for k, s in enumerate(scales, start=1)
        }
    else:
        hr = torch.stack([read_image(p, image_size) for p in paths])
        out = {s: degrade(hr, s) for s in scales}
    if include_hr:
        out[HR] = hr
    return hr, out


class LFWLowRes(Protocol):
    """LFW low-resolution verification (DCR): HR image 1 vs image 2 at 8/12/16/20 px, 10-fold."""

    paper = PAPER
    convention = (
        "pairs 'rel1 rel2 label' in file order; task V: image 1 at HR, image 2 downsampled to s px and "
        "resized back (IV: both at s px); cosine scores; 10 contiguous folds, threshold grid "
        "arange(-1,1,0.005), same iff score > t, the largest threshold wins ties (DCR compat); "
        "acc_hr = HR vs HR; criterion = mean over the evaluated resolutions"
    )

    def __init__(
        self,
        data: str | os.PathLike | None = None,
        pairs: str = "lfw_test_pair.txt",
        image_folder: str = "LFW_120x120_120",
        scales: Sequence[int] = DEFAULT_SCALES,
        image_size: int = 120,
        lowres: Literal["pil", "tensor"] = "pil",
        include_hr: bool = True,
        skip_missing: bool = False,
        n_folds: int = 10,
        task: Literal["V", "IV"] = "V",
        root: str | os.PathLike | None = None,
    ):
        folder = _sub(_root(data, root, "dcr-lfw-lowres"), "LFW", pairs)
        self.pairs = read_pair_list(folder / pairs, folder / image_folder, skip_missing=skip_missing)
        self.scales = tuple(int(s) for s in scales)
        self.image_size = int(image_size)
        self.lowres = _check_lowres(lowres)
        self.include_hr = include_hr
        self.n_folds = n_folds
        self.task = _task(task, VERIFICATION_TASKS, "dcr-lfw-lowres")

    def _batches(self, batch_size: int, progress: bool) -> Iterator[tuple[Tensor | dict, dict]]:
        bar = Progress(len(self.pairs.first), "lfw-lowres", progress)
        for i in range(0, len(self.pairs.first), batch_size):
            p1, p2 = self.pairs.first[i : i + batch_size], self.pairs.second[i : i + batch_size]
            _, probes = multiscale_batch(p2, self.scales, self.image_size, self.lowres, self.include_hr)
            if self.task == "IV":  # image 1 at the probe's resolution too
                _, img1 = multiscale_batch(p1, self.scales, self.image_size, self.lowres, self.include_hr)
            elif self.lowres == "pil":
                img1 = torch.stack([pil_to_tensor(_torchvision_resize_pil(_open_rgb(p), self.image_size)) for p in p1])
            else:
                img1 = torch.stack([read_image(p, self.image_size) for p in p1])
            bar.update(len(p1))
            yield img1, probes
        bar.close()

    def evaluate(
        self, model: Backbone, *, device: str = "cpu", batch_size: int = 64, progress: bool = False
    ) -> EvalResult:
        emb1, emb2 = collect_pairs(model, self._batches(batch_size, progress), batch_size=batch_size, device=device)
        metrics, artefacts = verification_metrics(
            model, emb1, emb2, self.pairs.same, n_folds=self.n_folds, device=device
        )
        metrics["pairs"] = float(len(self.pairs.same))
        metrics["skipped_pairs"] = float(self.pairs.skipped)
        return EvalResult(metrics=metrics, artefacts=artefacts, convention=self.convention)


class SCfaceProtocol(Protocol):
    """SCface: 80 test mugshots as gallery vs surveillance probes (5 cameras) per distance, rank-1."""

    paper = PAPER
    convention = (
        "gallery = one frontal mugshot per test subject (51-130), probes = cam1-5 images at distance "
        "d; closed-set rank-1 by cosine per distance; branches: d1 -> 8 px, d2 -> 12, d3 -> 16"
    )

    def __init__(
        self,
        data: str | os.PathLike | None = None,
        image_size: int = 120,
        distance_scales: Sequence[int] = (8, 12, 16),
        train_subjects: int = 50,
        root: str | os.PathLike | None = None,
    ):
        root = _root(data, root, "dcr-scface")
        self.images = scface_split(scan_scface(root), "test", train_subjects)
        self.image_size = int(image_size)
        self.distance_scales = {d: int(s) for d, s in zip((1, 2, 3), distance_scales)}
        if not any(i.distance == 0 for i in self.images) or not any(i.distance > 0 for i in self.images):
            raise ParameterError(f"{root}: the SCface test split needs mugshots and surveillance images")

    def evaluate(
        self, model: Backbone, *, device: str = "cpu", batch_size: int = 64, progress: bool = False
    ) -> EvalResult:
        was_training = getattr(model, "training", False)
        if isinstance(model, torch.nn.Module):
            model.eval()
        try:
            groups: dict[int, list] = {}
            for img in self.images:
                groups.setdefault(img.distance, []).append(img)
            emb = {}
            for d, imgs in groups.items():
                x = torch.stack([read_image(i.path, self.image_size) for i in imgs])
                emb[d] = (
                    embed_all(model, x, batch_size=batch_size, device=device),
                    torch.tensor([i.subject for i in imgs]),
                )
        finally:
            if was_training:
                model.train()
        gallery, gallery_labels = emb.pop(0)
        metrics = scface_metrics(
            model, gallery, gallery_labels, emb, distance_scales=self.distance_scales, device=device
        )
        metrics["gallery"] = float(len(gallery_labels))
        return EvalResult(metrics=metrics, convention=self.convention)


class _Retrieval(Protocol):
    """LR queries vs references of the same images (task R: HR references; IR: at the query's scale),
    precision@1 per scale, the query's own reference excluded."""

    paper = PAPER
    convention = (
        "query = image at s px (resized back); reference = every image of the set at HR (task R) or at "
        "the same s px (IR); nearest neighbour by L2 (the original's faiss IndexFlatL2); "
        "self_exclusion='exact' removes the query's own reference, 'drop_first' is the original's rule "
        "(drops rank 1 whatever it is); precision_at_1_hr = HR vs HR (IR); criterion = mean over scales"
    )

    def _setup(
        self,
        paths: list[Path],
        labels: Tensor,
        scales: Sequence[int],
        image_size: int,
        lowres: str,
        self_exclusion: str,
        backend: str,
        task: str,
        name: str,
    ) -> None:
        self.paths, self.labels = paths, labels
        self.scales = tuple(int(s) for s in scales)
        self.image_size = int(image_size)
        self.lowres = _check_lowres(lowres)
        if self_exclusion not in ("exact", "drop_first"):
            raise ParameterError(f"self_exclusion must be exact or drop_first, got {self_exclusion!r}")
        self.self_exclusion = self_exclusion
        self.backend = backend
        self.task = _task(task, RETRIEVAL_TASKS, name)

    def evaluate(
        self, model: Backbone, *, device: str = "cpu", batch_size: int = 64, progress: bool = False
    ) -> EvalResult:
        intra = self.task == "IR"

        def batches():
            for i in range(0, len(self.paths), batch_size):
                hr, probes = multiscale_batch(
                    self.paths[i : i + batch_size], self.scales, self.image_size, self.lowres, include_hr=intra
                )
                yield hr, probes

        hr_ref, queries = collect_pairs(model, batches(), batch_size=batch_size, device=device)
        labels = self.labels
        metrics = {}
        for s, q in queries.items():
            ref = q if intra else hr_ref  # IR: the same images at the same scale (own image excluded)
            metrics[f"precision_at_1_{s}"] = precision_at_1(
                q, ref, labels, labels, self_exclusion=self.self_exclusion, backend=self.backend
            )
            if is_dcr(model):
                from .evaluation import branch_map

                lr = 0 if s == HR else model.lr_branch(int(s))
                hr = lr if intra else model.hr_branch(int(s))
                qb = branch_map(model, q, lr, device)
                rb = branch_map(model, ref, hr, device)
                metrics[f"branch_precision_at_1_{s}"] = precision_at_1(
                    qb, rb, labels, labels, self_exclusion=self.self_exclusion, backend=self.backend
                )
        metrics["criterion"] = criterion(metrics, "precision_at_1_", queries)
        if is_dcr(model):
            metrics["branch_criterion"] = criterion(metrics, "branch_precision_at_1_", queries)
        return EvalResult(metrics=metrics, convention=self.convention)


class CasiaRetrieval(_Retrieval):
    """CASIA-WebFace held-out fold: LR queries vs HR references of the same images, precision@1."""

    def __init__(
        self,
        data: str | os.PathLike | None = None,
        subset: int = 0,
        scales: Sequence[int] = DEFAULT_SCALES,
        image_size: int = 120,
        lowres: Literal["pil", "tensor"] = "tensor",
        self_exclusion: Literal["exact", "drop_first"] = "exact",
        backend: Literal["torch", "faiss"] = "torch",
        task: Literal["R", "IR"] = "R",
        root: str | os.PathLike | None = None,
    ):
        self.data = CasiaWebFace(
            _root(data, root, "dcr-casia-retrieval"), split="val", subset=subset, image_size=image_size
        )
        paths = [Path(self.data.base.paths[i]) for i in self.data.indices]
        self._setup(
            paths, self.data.labels, scales, image_size, lowres, self_exclusion, backend, task, "dcr-casia-retrieval"
        )


class LFWRetrieval(_Retrieval):
    """LFW as a retrieval set (the original's LFW task R / IR): every image of ``LFW_120x120_120``, one label
    per person folder (sorted by name; the original used ``os.listdir`` order, which varies by filesystem)."""

    def __init__(
        self,
        data: str | os.PathLike | None = None,
        image_folder: str = "LFW_120x120_120",
        scales: Sequence[int] = DEFAULT_SCALES,
        image_size: int = 120,
        lowres: Literal["pil", "tensor"] = "tensor",
        self_exclusion: Literal["exact", "drop_first"] = "exact",
        backend: Literal["torch", "faiss"] = "torch",
        task: Literal["R", "IR"] = "R",
        root: str | os.PathLike | None = None,
    ):
        folder = _sub(_root(data, root, "dcr-lfw-retrieval"), "LFW", image_folder) / image_folder
        people = sorted(d for d in os.listdir(folder) if (folder / d).is_dir())
        paths, labels = [], []
        for label, person in enumerate(people):
            for name in sorted(os.listdir(folder / person)):
                if name.lower().endswith((".jpg", ".jpeg", ".png")):
                    paths.append(folder / person / name)
                    labels.append(label)
        if not paths:
            raise DataError(f"{folder}: no images in person folders")
        self._setup(
            paths, torch.tensor(labels), scales, image_size, lowres, self_exclusion, backend, task, "dcr-lfw-retrieval"
        )
