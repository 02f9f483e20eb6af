"""Gallery/probe identification protocol (1:N), incl. CASIA NIR-VIS 2.0 style ten-fold list files.

Convention: cosine scores; closed-set rank-k over probes with a mate in the gallery (rank = 1 + number
of gallery items scoring strictly higher than the best mate); verification rate VR@FAR over all
gallery x probe pairs (rule ``at_most`` by default, ``above`` = DVG's code); open-set DIR@FPIR when
some probes have no mate; with several folds, mean and population std (ddof=0) over folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import attrs
import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..metrics.gallery import Gallery
from ..api import EvalResult, Protocol
from ..errors import DataError
from ..metrics.curves import Rule
from .common import check_missing, embed_paths, gather_features, read_text_lines

#: (gallery, probe) file name patterns searched in the data root, ``{k}`` = fold number 1..10.
LIST_PATTERNS = (
    ("NIR_VIS_gallery{k}.txt", "NIR_VIS_probe{k}.txt"),
    ("vis_gallery_{k}.txt", "nir_probe_{k}.txt"),
    ("gallery_{k}.txt", "probe_{k}.txt"),
    ("gallery{k}.txt", "probe{k}.txt"),
)
LIST_DIRS = (".", "protocols", "protocol", "list_file", "lists")


@attrs.frozen
class ImageList:
    """Parsed ``path [label]`` list; label-less lines take the parent folder name as identity."""

    paths: list[str]
    labels: list[str]
    source: str


def parse_list(path: Path) -> ImageList:
    paths, labels = [], []
    for no, raw in enumerate(read_text_lines(path), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) > 2:
            raise DataError(f"{path}:{no}: expected 'path label' or 'path', got {line[:80]!r}")
        rel = tok[0].replace("\\", "/")
        label = tok[1] if len(tok) == 2 else Path(rel).parent.name
        if not label:
            raise DataError(f"{path}:{no}: no label and no parent folder to take the identity from")
        paths.append(rel)
        labels.append(label)
    if not paths:
        raise DataError(f"{path}: empty list")
    return ImageList(paths, labels, str(path))


def _resolve(root: Path, name: str | Path) -> Path:
    p = Path(name)
    return p if p.is_absolute() or p.exists() else root / p


def find_folds(root: Path, gallery: str | None, probe: str | None) -> list[tuple[Path, Path]]:
    """List files as (gallery, probe) per fold: given names (``{k}`` expands to folds 1..), or the
    first known pattern found in the root or its protocol folders."""
    if (gallery is None) != (probe is None):
        raise DataError("identification: give both gallery and probe lists, or neither")
    if gallery is not None and probe is not None:
        if "{k}" in gallery or "{k}" in probe:
            folds = []
            for k in range(1, 101):
                g, p = _resolve(root, gallery.format(k=k)), _resolve(root, probe.format(k=k))
                if not (g.is_file() and p.is_file()):
                    break
                folds.append((g, p))
            if not folds:
                raise DataError(f"identification: no fold list {gallery.format(k=1)} / {probe.format(k=1)} in {root}")
            return folds
        g, p = _resolve(root, gallery), _resolve(root, probe)
        for f in (g, p):
            if not f.is_file():
                raise DataError(f"identification: list file not found: {f}")
        return [(g, p)]
    for sub in LIST_DIRS:
        base = root / sub
        for gpat, ppat in LIST_PATTERNS:
            folds = []
            for k in range(1, 101):
                g, p = base / gpat.format(k=k), base / ppat.format(k=k)
                if not (g.is_file() and p.is_file()):
                    break
                folds.append((g, p))
            if folds:
                return folds
        if (base / "gallery.txt").is_file() and (base / "probe.txt").is_file():
            return [(base / "gallery.txt", base / "probe.txt")]
    raise DataError(
        f"identification: no gallery/probe lists in {root} (looked for gallery.txt/probe.txt and "
        f"{', '.join(g for g, _ in LIST_PATTERNS)} in {', '.join(LIST_DIRS)}); pass gallery= and probe="
    )


class IdentificationProtocol(Protocol):
    """Gallery/probe identification (rank-k, CMC, VR@FAR, DIR@FPIR), mean/std over list folds.

    ``data``: root folder of images (and of the lists unless ``gallery``/``probe`` are given; names
    may contain ``{k}`` for folds 1..N). ``images``: image root when it differs from ``data``.
    ``template``: the alignment template the images are aligned to (not declared by default: they
    are resized as they are, and that is said); a model trained on another one gets them warped.
    """

    convention = (
        "cosine; closed-set rank-k over probes with a gallery mate (ties count in the probe's "
        "favour); VR@FAR over all gallery x probe pairs; DIR@FPIR over non-mated probes; "
        "mean and population std (ddof=0) over folds"
    )
    paper = "CASIA NIR-VIS 2.0 (Li et al. 2013) ten-fold protocol; DVG/DVG-Face evaluation"

    def __init__(
        self,
        data: str | Path,
        gallery: str | None = None,
        probe: str | None = None,
        images: str | Path | None = None,
        image_size: int | None = None,
        flip: bool = False,
        skip_missing: bool = False,
        ranks: Sequence[int] = (1, 5, 10),
        fars: Sequence[float] = (1e-2, 1e-3, 1e-4),
        far_rule: str = "at_most",
        fpirs: Sequence[float] = (1e-2, 1e-1),
        template: str | None = None,
    ):
        if template is not None and (not isinstance(template, str) or not template):
            raise DataError(f"identification: template must name an alignment template, got {template!r}")
        self.template = template
        root = Path(data)
        if not root.exists():
            raise DataError(f"identification: data not found: {root}")
        if root.is_file():
            raise DataError(
                f"identification: data must be a folder (got file {root}); pass the lists as gallery= and probe="
            )
        if far_rule not in ("at_most", "above", "nearest"):
            raise DataError(f"identification: far_rule must be at_most, above or nearest, got {far_rule!r}")
        self.root = root
        self.image_root = Path(images) if images is not None else root
        self.folds = [(parse_list(g), parse_list(p)) for g, p in find_folds(root, gallery, probe)]
        self.image_size, self.flip, self.skip_missing = image_size, flip, skip_missing
        self.ranks = tuple(int(r) for r in ranks)
        self.fars = tuple(float(f) for f in fars)
        self.far_rule = cast(Rule, far_rule)  # one of Rule's values, checked above
        self.fpirs = tuple(float(f) for f in fpirs)

    def items(self) -> list[str]:
        return list(dict.fromkeys(p for g, pr in self.folds for p in g.paths + pr.paths))

    def evaluate(self, model, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        keys = self.items()
        paths = [self.image_root / k for k in keys]
        present = check_missing(paths, skip_missing=self.skip_missing)
        emb = embed_paths(
            model,
            [p for p, ok in zip(paths, present) if ok],
            image_size=self.image_size,
            batch_size=batch_size,
            device=device,
            flip=self.flip,
            progress=progress,
            desc="identification",
            data_template=self.template,
        )
        full = torch.zeros(len(keys), emb.shape[1] if emb.dim() == 2 else 0)
        full[torch.from_numpy(present)] = emb
        return self._score(full, keys, present)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        keys = self.items()
        emb, present = gather_features(features, keys, skip_missing=self.skip_missing, source="the feature file")
        return self._score(emb, keys, present)

    def _score(self, emb: Tensor, keys: list[str], present: np.ndarray) -> EvalResult:
        index = {k: i for i, k in enumerate(keys)}
        per_fold: list[dict[str, float]] = []
        cmc_curves = []
        skipped = int((~present).sum())
        for gal, prb in self.folds:
            ids = {lab: i for i, lab in enumerate(dict.fromkeys(gal.labels + prb.labels))}
            gi = np.array([index[p] for p in gal.paths])
            pi = np.array([index[p] for p in prb.paths])
            gok, pok = present[gi], present[pi]
            gl = torch.tensor([ids[lab] for lab in gal.labels])[torch.from_numpy(gok)]
            pl = torch.tensor([ids[lab] for lab in prb.labels])[torch.from_numpy(pok)]
            g, p = emb[torch.from_numpy(gi[gok])], emb[torch.from_numpy(pi[pok])]
            if len(g) == 0 or len(p) == 0:
                raise DataError(f"identification: fold {gal.source} has no gallery or probe images left")
            res = metrics.identification_ranks(Gallery(g, gl, backend="torch"), gl, p, pl)
            fold: dict[str, float] = {f"rank{k}": res.at(k) for k in self.ranks}
            fold["n_gallery"], fold["n_probe"] = float(len(g)), float(len(p))
            fold["n_mated_probes"] = float(res.n_mated)
            scores = metrics.cosine_scores(g, p).double().numpy().ravel()
            same = (gl[:, None] == pl[None, :]).numpy().ravel()
            if same.any() and not same.all():
                curve = metrics.roc(scores, same, drop_intermediate=self.far_rule != "at_most")
                for far, tar in zip(
                    self.fars, metrics.tar_at_far(scores, same, self.fars, rule=self.far_rule, curve=curve)
                ):
                    fold[f"vr@far={far:g}"] = float(tar)
                fold["eer"] = metrics.eer(scores, same)
            if (res.ranks == 0).any() and res.n_mated:
                for fp, rate in metrics.dir_at_fpir(g, gl, p, pl, self.fpirs, result=res).items():
                    fold[f"dir@fpir={fp:g}"] = rate
            per_fold.append(fold)
            cmc_curves.append(res.cmc[:20].tolist())
        names = list(dict.fromkeys(k for f in per_fold for k in f))
        out: dict[str, float] = {}
        for name in names:
            vals = np.array([f[name] for f in per_fold if name in f])
            out[name] = float(vals.mean())
            if len(self.folds) > 1 and not name.startswith("n_"):
                out[f"{name}_std"] = float(vals.std())
        out["n_folds"] = float(len(self.folds))
        out["n_skipped"] = float(skipped)
        artefacts: dict[str, Any] = {"per_fold": per_fold, "cmc": cmc_curves}
        return EvalResult(out, artefacts, self.convention)


__all__ = ["IdentificationProtocol", "parse_list", "find_folds"]
