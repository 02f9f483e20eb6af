"""IJB-B / IJB-C 1:1 template verification in insightface's layout.

Layout (``data`` = the ``IJBC`` or ``IJBB`` folder of ``IJB_release``)::

    meta/ijbc_face_tid_mid.txt          image template_id media_id
    meta/ijbc_template_pair_label.txt   template1 template2 label
    meta/ijbc_name_5pts_score.txt       image x1 y1 ... x5 y5 detector_score
    loose_crop/<image>                  the images (``images`` overrides)

Convention (insightface ``eval_ijbc.py``): each image is aligned by a 5-point similarity transform
to the backbone's template (``input_spec.template``, ArcFace 112 for most; ``template`` overrides),
rendered at the backbone's canonical size, embedded (optionally + its mirror),
optionally multiplied by its detector score; features are averaged per media then summed per
template and L2-normalised; template pairs are scored by cosine; TAR at FAR 1e-6..1e-1 with the
``nearest`` rule (the published numbers' rule; ``far_rule="at_most"`` for the strict one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..api import EvalResult, Protocol
from ..errors import DataError
from ..metrics.curves import Rule
from .common import Progress, check_missing, gather_features, image_size_for, read_text_lines


def _table(path: Path, min_cols: int) -> list[list[str]]:
    rows = []
    for no, raw in enumerate(read_text_lines(path), start=1):
        tok = raw.split()
        if not tok:
            continue
        if len(tok) < min_cols:
            raise DataError(f"{path}:{no}: expected at least {min_cols} columns, got {len(tok)}")
        rows.append(tok)
    if not rows:
        raise DataError(f"{path}: empty file")
    return rows


def _ints(rows: list[list[str]], col: int, path: Path) -> np.ndarray:
    try:
        return np.array([int(r[col]) for r in rows], dtype=np.int64)
    except ValueError:
        bad = next(i for i, r in enumerate(rows) if not r[col].lstrip("-").isdigit())
        raise DataError(f"{path}: row {bad + 1} column {col + 1} is not an integer: {rows[bad][col]!r}") from None


def aggregate_templates(features: Tensor, templates: np.ndarray, medias: np.ndarray) -> tuple[np.ndarray, Tensor]:
    """Media mean, then sum over a template's media, then L2 normalisation (vectorised index_add).

    Returns (sorted unique template ids, [T, D] features)."""
    tm = np.stack([templates, medias], 1)
    uniq_tm, media_of = np.unique(tm, axis=0, return_inverse=True)
    media = torch.from_numpy(media_of.ravel())
    d = features.shape[1]
    msum = torch.zeros(len(uniq_tm), d, dtype=torch.float64).index_add_(0, media, features.double())
    ones = torch.ones(len(media), dtype=torch.float64)
    mcount = torch.zeros(len(uniq_tm), dtype=torch.float64).index_add_(0, media, ones)
    mmean = msum / mcount[:, None]
    uniq_t, tmpl_of = np.unique(uniq_tm[:, 0], return_inverse=True)
    tsum = torch.zeros(len(uniq_t), d, dtype=torch.float64).index_add_(0, torch.from_numpy(tmpl_of.ravel()), mmean)
    return uniq_t, torch.nn.functional.normalize(tsum, dim=1)  # float64: untrained nets score ~0.9999


def pair_scores(tfeat: Tensor, tids: np.ndarray, t1: np.ndarray, t2: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Cosine scores of template pairs, gathered in chunks (memory O(chunk x D))."""
    pos1 = np.searchsorted(tids, t1)
    pos2 = np.searchsorted(tids, t2)
    bad = (pos1 >= len(tids)) | (pos2 >= len(tids))
    bad |= tids[np.minimum(pos1, len(tids) - 1)] != t1
    bad |= tids[np.minimum(pos2, len(tids) - 1)] != t2
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} template pairs name templates without images (first: {t1[i]} {t2[i]})")
    out = np.empty(len(t1), dtype=np.float64)
    for s in range(0, len(t1), chunk):
        a = tfeat[torch.from_numpy(pos1[s : s + chunk])]
        b = tfeat[torch.from_numpy(pos2[s : s + chunk])]
        out[s : s + chunk] = (a * b).sum(1).double().numpy()
    return out


class IJBProtocol(Protocol):
    """IJB-B/C 1:1 template verification (5-point alignment, media mean then sum, TAR@FAR 1e-6..1e-1)."""

    convention = (
        "insightface eval_ijbc: ArcFace-112 5-point alignment, flip sum, optional detector-score "
        "weighting, media mean then template sum then L2; cosine; TAR@FAR nearest ROC point"
    )
    paper = "Maze et al. 2018 (IJB-C), Whitelam et al. 2017 (IJB-B); insightface eval_ijbc.py"

    def __init__(
        self,
        data: str | Path,
        images: str | Path | None = None,
        image_size: int | None = None,
        flip: bool = True,
        detector_weighting: bool = False,
        normalize_images: bool = False,
        template: str | None = None,
        skip_missing: bool = False,
        fars: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
        far_rule: str = "nearest",
    ):
        root = Path(data)
        if not root.is_dir():
            raise DataError(f"ijb: data folder not found: {root}")
        meta = root / "meta"
        if not meta.is_dir():
            raise DataError(f"ijb: {root} has no meta/ folder (expected insightface's IJB_release layout)")
        prefix = next((p for p in ("ijbc", "ijbb") if (meta / f"{p}_face_tid_mid.txt").is_file()), None)
        if prefix is None:
            raise DataError(f"ijb: no ijbc_face_tid_mid.txt or ijbb_face_tid_mid.txt in {meta}")
        if far_rule not in ("nearest", "at_most", "above"):
            raise DataError(f"ijb: far_rule must be nearest, at_most or above, got {far_rule!r}")
        self.root, self.prefix = root, prefix
        self.image_root = (
            Path(images)
            if images is not None
            else next((root / d for d in ("loose_crop", "images", "img") if (root / d).is_dir()), root / "loose_crop")
        )
        f_tm = meta / f"{prefix}_face_tid_mid.txt"
        rows = _table(f_tm, 3)
        self.images = [r[0] for r in rows]
        self.templates, self.medias = _ints(rows, 1, f_tm), _ints(rows, 2, f_tm)
        f_pairs = meta / f"{prefix}_template_pair_label.txt"
        pairs = _table(f_pairs, 3)
        self.t1, self.t2, self.label = _ints(pairs, 0, f_pairs), _ints(pairs, 1, f_pairs), _ints(pairs, 2, f_pairs)
        f_lm = meta / f"{prefix}_name_5pts_score.txt"
        lm_rows = _table(f_lm, 12)
        by_name = {r[0]: r for r in lm_rows}
        missing = [n for n in self.images if n not in by_name]
        if missing:
            raise DataError(f"{f_lm}: no landmarks for {len(missing)} image(s), first: {', '.join(missing[:5])}")
        try:
            vals = np.array([[float(v) for v in by_name[n][1:12]] for n in self.images])
        except ValueError:
            raise DataError(f"{f_lm}: landmarks and scores must be numbers") from None
        self.landmarks, self.det_scores = vals[:, :10].reshape(-1, 5, 2), vals[:, 10]
        self.image_size, self.flip, self.detector_weighting = image_size, flip, detector_weighting
        self.normalize_images, self.template, self.skip_missing = normalize_images, template, skip_missing
        self.fars, self.far_rule = tuple(float(f) for f in fars), cast(Rule, far_rule)  # checked above

    def items(self) -> list[str]:
        return list(self.images)

    def evaluate(self, model, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        from ..data.align import align_list
        from ..data.decode import read_image
        from ..inference import embed_batches, optimize_for_inference

        size = image_size_for(model, self.image_size)
        spec = getattr(model, "input_spec", None)
        template = self.template or (spec.template if spec is not None else "arcface112")
        paths = [self.image_root / n for n in self.images]
        present = check_missing(paths, skip_missing=self.skip_missing)
        idx = np.flatnonzero(present)
        ready = not isinstance(model, torch.nn.Module) or getattr(model, "facerec_optimized", False)
        fast = model if ready else optimize_for_inference(model, device=device)
        bar = Progress(len(idx), "ijb", enabled=progress)

        def batches():
            for s in range(0, len(idx), batch_size):
                part = idx[s : s + batch_size]
                imgs = [read_image(paths[i]) for i in part]
                yield align_list(imgs, self.landmarks[part], template, size)
                bar.update(len(part))

        try:
            emb = embed_batches(fast, batches(), device=device, flip=self.flip)
        finally:
            bar.close()
        full = torch.zeros(len(paths), emb.shape[1] if emb.dim() == 2 else 0)
        full[torch.from_numpy(present)] = emb
        return self._score(full, present)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        emb, present = gather_features(features, self.images, skip_missing=self.skip_missing, source="the feature file")
        return self._score(emb, present)

    def _score(self, emb: Tensor, present: np.ndarray) -> EvalResult:
        f = emb.double()
        if self.normalize_images:
            f = torch.nn.functional.normalize(f, dim=1)
        if self.detector_weighting:
            f = f * torch.from_numpy(self.det_scores)[:, None]
        keep = torch.from_numpy(present)
        tids, tfeat = aggregate_templates(f[keep], self.templates[present], self.medias[present])
        pairs_ok = np.isin(self.t1, tids) & np.isin(self.t2, tids)
        n_skipped_pairs = int((~pairs_ok).sum())
        if n_skipped_pairs and not self.skip_missing:
            raise DataError(f"ijb: {n_skipped_pairs} template pairs name templates without images")
        label = self.label[pairs_ok].astype(bool)
        scores = pair_scores(tfeat, tids, self.t1[pairs_ok], self.t2[pairs_ok])
        curve = metrics.roc(scores, label, drop_intermediate=self.far_rule != "at_most")
        tars = metrics.tar_at_far(scores, label, self.fars, rule=self.far_rule, curve=curve)
        out: dict[str, float] = {f"tar@far={far:g}": float(t) for far, t in zip(self.fars, tars)}
        out["auc"] = metrics.auc(scores, label)
        out["n_templates"] = float(len(tids))
        out["n_pairs"] = float(len(label))
        out["n_skipped"] = float(int((~present).sum()))
        out["n_skipped_pairs"] = float(n_skipped_pairs)
        thin = curve if self.far_rule != "at_most" else metrics.roc(scores, label, drop_intermediate=True)
        artefacts: dict[str, Any] = {
            "roc": {"fpr": thin.fpr, "tpr": thin.tpr, "thresholds": thin.thresholds},
            "pair_scores": scores,
            "pair_labels": label,
        }
        return EvalResult(out, artefacts, self.convention)


__all__ = ["IJBProtocol", "aggregate_templates", "pair_scores"]
