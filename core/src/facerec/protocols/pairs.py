"""Pair verification protocol: LFW ``pairs.txt``, DCR ``rel1 rel2 label`` lists and insightface ``.bin``.

Convention: cosine similarity of the two embeddings (flip TTA = sum of the embeddings of the image
and its mirror); accuracy over contiguous folds in file order (LFW: the header's 10 folds), the
threshold chosen on the other folds as the exact best one over all distinct training scores; the
std is the population std (ddof=0) over folds. TAR@FAR with the "at most" rule; AUC; EER.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..api import EvalResult, Protocol
from ..errors import DataError
from ..weights.readers import NUMPY_GLOBALS, RestrictedUnpickler
from .common import (
    check_missing,
    embed_images,
    gather_features,
    iter_image_batches,
    load_image,
    plan_input,
    read_text_lines,
)

IMAGE_EXTS = (".jpg", ".png", ".jpeg", ".bmp", ".pgm", ".ppm", ".webp")
_INT = re.compile(r"^\d+$")


@attrs.frozen
class PairList:
    """Pairs as item keys (relative image paths, or ``#<i>`` for images inside a .bin)."""

    left: list[str]
    right: list[str]
    same: np.ndarray
    folds: np.ndarray
    source: str


# ------------------------------------------------------------------------------------ text formats


def _lfw_key(name: str, number: str, ext: str) -> str:
    return f"{name}/{name}_{int(number):04d}{ext}"


def parse_pairs(path: Path, *, n_folds: int = 10, ext: str = ".jpg") -> PairList:
    """Parse LFW ``pairs.txt`` (optional ``folds per_fold`` header; ``name n1 n2`` = same,
    ``name1 n1 name2 n2`` = different) or a ``rel1 rel2 label`` list (label 1 = same).

    LFW files with a header get its folds (each fold = ``per_fold`` same then ``per_fold``
    different pairs); otherwise ``n_folds`` contiguous folds in file order.
    """
    lines = read_text_lines(path)
    left: list[str] = []
    right: list[str] = []
    same: list[bool] = []
    header: tuple[int, int] | None = None
    for no, raw in enumerate(lines, start=1):
        tok = raw.split()
        if not tok or tok[0].startswith("#"):
            continue
        if not left and header is None and len(tok) <= 2 and all(_INT.match(t) for t in tok):
            header = (int(tok[0]), int(tok[1]) if len(tok) == 2 else 0)
            continue
        if len(tok) == 3 and _INT.match(tok[1]) and _INT.match(tok[2]):
            left.append(_lfw_key(tok[0], tok[1], ext))
            right.append(_lfw_key(tok[0], tok[2], ext))
            same.append(True)
        elif len(tok) == 4 and _INT.match(tok[1]) and _INT.match(tok[3]):
            left.append(_lfw_key(tok[0], tok[1], ext))
            right.append(_lfw_key(tok[2], tok[3], ext))
            same.append(False)
        elif len(tok) == 3 and tok[2] in ("0", "1"):
            left.append(tok[0])
            right.append(tok[1])
            same.append(tok[2] == "1")
        else:
            raise DataError(
                f"{path}:{no}: cannot parse pair line {raw.strip()[:80]!r} (expected 'name n1 n2', "
                "'name1 n1 name2 n2' or 'path1 path2 label')"
            )
    if not left:
        raise DataError(f"{path}: no pairs found")
    n = len(left)
    if header is not None and header[1] and header[0] * 2 * header[1] == n:
        folds = np.repeat(np.arange(header[0]), 2 * header[1])
    else:
        if header is not None and header[1]:
            raise DataError(
                f"{path}:1: header says {header[0]} folds x {2 * header[1]} pairs but the file has {n} pairs"
            )
        k = min(n_folds, n)
        folds = np.repeat(np.arange(k), np.diff(metrics.fold_bounds(n, k)))
    return PairList(left, right, np.asarray(same), folds, str(path))


# -------------------------------------------------------------------------------- insightface .bin


#: A .bin holds bytes, lists, tuples, booleans/ints and numpy arrays: nothing else is resolved, so it never runs code.
_BIN_GLOBALS = NUMPY_GLOBALS | {("numpy", "bool_")}


def _refuse_bin(module: str, name: str) -> Exception:
    return pickle.UnpicklingError(f"global {module}.{name} is not allowed in a .bin file")


def load_bin(path: Path) -> tuple[list[bytes], np.ndarray]:
    """Read an insightface verification .bin: ``(list of 2N encoded images, N issame flags)``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    from ..filekind import read_failure

    try:
        obj = RestrictedUnpickler(io.BytesIO(data), _BIN_GLOBALS, _refuse_bin, encoding="bytes").load()
    except Exception as exc:  # refused globals, truncation and safetensors are named as such
        raise DataError(
            read_failure(path, exc, "an insightface .bin pickle")
            or f"{path}: not an insightface .bin file ({type(exc).__name__}: {exc})"
        ) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataError(f"{path}: expected a pickled (bins, issame_list) pair")
    bins, issame = obj
    bins = [bytes(b.tobytes() if isinstance(b, np.ndarray) else b) for b in bins]
    same = np.asarray(issame, dtype=bool).ravel()
    if len(bins) != 2 * len(same):
        raise DataError(f"{path}: {len(bins)} images for {len(same)} pairs (need 2 per pair)")
    return bins, same


# -------------------------------------------------------------------------------------- protocol


def _find_image_root(root: Path, key: str) -> Path:
    """``root`` if it holds ``key``; else the one subfolder (depth 1) that does."""
    stem = Path(key).with_suffix("")

    def has(base: Path) -> bool:
        return any((base / stem).with_suffix(e).is_file() for e in IMAGE_EXTS)

    if has(root):
        return root
    if root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if has(sub):
                return sub
    return root


def _detect_ext(root: Path, key: str) -> str:
    stem = Path(key).with_suffix("")
    for e in IMAGE_EXTS:
        if (root / stem).with_suffix(e).is_file():
            return e
    return Path(key).suffix or ".jpg"


class PairsProtocol(Protocol):
    """Pair verification (LFW pairs.txt, DCR pair lists, insightface .bin): k-fold accuracy, TAR@FAR, EER.

    ``data``: a pairs file (``pairs.txt``, ``*.txt`` list), an insightface ``.bin``, or a folder
    holding ``pairs.txt``. ``images``: the image folder (default: the pairs file's folder, or its
    one subfolder holding the named images). ``accuracy``: ``exact`` (our convention),
    ``insightface`` (squared L2 grid 0..4 step 0.01) or ``dcr`` (cosine grid -1..1 step 0.005).
    ``max_pairs`` keeps an evenly strided subset (both classes, every fold) for quick checks.
    ``template``: the alignment template the images are aligned to; insightface's convention (the
    ArcFace 112 template, as in its LFW ``.bin`` and every "aligned LFW") unless told otherwise. A
    model trained on another template gets the images warped to its own (said once on stderr).
    """

    convention = (
        "cosine score; contiguous folds in file order (LFW header folds); exact best training "
        "threshold, same iff score >= t; mean and population std (ddof=0) over folds; "
        "TAR@FAR = largest TAR with FAR <= target"
    )
    paper = "Huang et al. 2007 (LFW); insightface verification .bin"

    def __init__(
        self,
        data: str | Path,
        images: str | Path | None = None,
        image_size: int | None = None,
        flip: bool = False,
        skip_missing: bool = False,
        n_folds: int = 10,
        accuracy: Literal["exact", "insightface", "dcr"] = "exact",
        fars: Sequence[float] = (1e-3, 1e-2, 1e-1),
        max_pairs: int | None = None,
        template: str = "arcface112",
    ):
        if not isinstance(template, str) or not template:
            raise DataError(f"pairs: template must name an alignment template, got {template!r}")
        self.template = template
        if accuracy not in ("exact", "insightface", "dcr"):
            raise DataError(f"pairs: accuracy must be exact, insightface or dcr, got {accuracy!r}")
        data = Path(data)
        if data.is_dir():
            cands = [data / "pairs.txt", *sorted(data.glob("*pairs*.txt"))]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                raise DataError(f"pairs: no pairs.txt (or *pairs*.txt) in folder {data}")
            data = found
        elif not data.exists():
            raise DataError(f"pairs: data not found: {data}")
        self.data, self.image_size, self.flip = data, image_size, flip
        self.skip_missing, self.accuracy, self.fars = skip_missing, accuracy, tuple(float(f) for f in fars)
        self.bins: list[bytes] | None = None
        if data.suffix == ".bin":
            self.bins, same = load_bin(data)
            n = len(same)
            keys = [f"#{i}" for i in range(2 * n)]
            k = min(n_folds, n)
            folds = np.repeat(np.arange(k), np.diff(metrics.fold_bounds(n, k)))
            self.pairs = PairList(keys[0::2], keys[1::2], same, folds, str(data))
            self.root = data.parent
        else:
            first = parse_pairs(data, n_folds=n_folds)
            base = Path(images) if images is not None else data.parent
            self.root = _find_image_root(base, first.left[0]) if images is None else base
            ext = _detect_ext(self.root, first.left[0])
            self.pairs = parse_pairs(data, n_folds=n_folds, ext=ext) if ext != ".jpg" else first
        if max_pairs is not None and max_pairs < len(self.pairs.same):
            stride = -(-len(self.pairs.same) // int(max_pairs))
            p = self.pairs
            sel = slice(None, None, stride)
            self.pairs = PairList(p.left[sel], p.right[sel], p.same[sel], p.folds[sel], p.source)

    # -------------------------------------------------------------------------------- embedding

    def items(self) -> list[str]:
        """Unique item keys in first-use order (what must be embedded)."""
        return list(dict.fromkeys(self.pairs.left + self.pairs.right))

    def evaluate(self, model, *, device: str = "cpu", batch_size: int = 64, progress: bool = False) -> EvalResult:
        keys = self.items()
        plan = plan_input(model, self.image_size, self.template)
        size = plan.load_size
        if self.bins is not None:
            from ..data.decode import decode_image

            items: list[Any] = [int(k[1:]) for k in keys]
            present = np.ones(len(keys), bool)
            loader = lambda i, s: decode_image(self.bins[i], f"{self.data}[{i}]", s)  # noqa: E731
        else:
            items = [self.root / k for k in keys]
            present = check_missing(items, skip_missing=self.skip_missing)
            items = [p for p, ok in zip(items, present) if ok]
            loader = load_image
        batches = iter_image_batches(items, image_size=size, batch_size=batch_size, loader=loader)
        emb = embed_images(
            model,
            batches,
            len(items),
            device=device,
            flip=self.flip,
            progress=progress,
            desc=f"pairs {self.data.name}",
            plan=plan,
        )
        full = torch.zeros(len(keys), emb.shape[1] if emb.dim() == 2 else 0)
        full[torch.from_numpy(present)] = emb
        table = dict(zip(keys, range(len(keys))))
        return self._score(full, table, present)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        keys = self.items()
        emb, present = gather_features(features, keys, skip_missing=self.skip_missing, source="the feature file")
        return self._score(emb, dict(zip(keys, range(len(keys)))), present)

    # ---------------------------------------------------------------------------------- scoring

    def _score(self, emb: Tensor, index: dict[str, int], present: np.ndarray) -> EvalResult:
        p = self.pairs
        li = np.array([index[k] for k in p.left])
        ri = np.array([index[k] for k in p.right])
        ok = present[li] & present[ri]
        n_skipped = int((~ok).sum())
        if not ok.any():
            raise DataError(f"pairs {self.data}: no pair has both images")
        li, ri, same, folds = li[ok], ri[ok], p.same[ok], p.folds[ok]
        e = torch.nn.functional.normalize(emb.double(), dim=1)
        scores = (e[torch.from_numpy(li)] * e[torch.from_numpy(ri)]).sum(1).numpy()
        nan = int(np.isnan(scores).sum())
        if nan:
            raise metrics.MetricInputError(f"pairs {self.data}: {nan} pair scores are NaN (embeddings with NaN)")
        # renumber folds that survived skipping so they are 0..k-1
        _, fold_ids = np.unique(folds, return_inverse=True)
        if self.accuracy == "insightface":
            dist = 2.0 - 2.0 * scores  # squared L2 of unit vectors
            kf = metrics.kfold_accuracy(
                dist,
                same,
                thresholds=np.arange(0, 4, 0.01),
                higher_is_same=False,
                strict=True,
                tie="first",
                fold_ids=fold_ids,
            )
        elif self.accuracy == "dcr":
            kf = metrics.kfold_accuracy(
                scores.astype(np.float32).astype(np.float64),
                same,
                thresholds=np.arange(-1.0, 1.0, 0.005),
                strict=True,
                tie="last",
                fold_ids=fold_ids,
            )
        else:
            kf = metrics.kfold_accuracy(scores, same, fold_ids=fold_ids)
        out: dict[str, float] = {
            "accuracy": kf.mean,
            "accuracy_std": kf.std,
            "threshold_mean": float(np.mean(kf.fold_threshold)),
            "n_pairs": float(len(same)),
            "n_skipped": float(n_skipped),
        }
        artefacts: dict[str, Any] = {
            "fold_accuracy": kf.fold_accuracy.tolist(),
            "fold_threshold": kf.fold_threshold.tolist(),
        }
        if same.all() or not same.any():
            out["n_folds"] = float(len(kf.fold_accuracy))
            return EvalResult(out, artefacts, self.convention)
        curve = metrics.roc(scores, same)
        out["auc"] = metrics.auc(scores, same, curve=curve)
        out["eer"] = metrics.eer(scores, same, curve=curve)
        for far, tar in zip(self.fars, metrics.tar_at_far(scores, same, self.fars, curve=curve)):
            out[f"tar@far={far:g}"] = float(tar)
        out["n_folds"] = float(len(kf.fold_accuracy))
        thin = metrics.roc(scores, same, drop_intermediate=True)
        artefacts["roc"] = {"fpr": thin.fpr, "tpr": thin.tpr, "thresholds": thin.thresholds}
        return EvalResult(out, artefacts, self.convention)


__all__ = ["PairsProtocol", "PairList", "parse_pairs", "load_bin"]
