"""NIR-VIS data and evaluation: list files with a configurable modality rule, the DVG evaluation
(rank-k over a VIS gallery, VR@FAR over all gallery x probe pairs) and the CASIA NIR-VIS 2.0
ten-fold protocol (mean and std over folds)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from facerec.api import Backbone, Dataset, Embedder, EvalResult, Protocol
from facerec.data.formats import ImageList
from facerec.errors import DataError, ParameterError
from facerec.inference import embed_batches
from torch import Tensor

#: The last 'NIR' or 'VIS' in a path decides (DVG-Face tests 'NIR' anywhere first, which calls
#: ``NIR-VIS-2.0/VIS/x.jpg`` NIR; taking the last occurrence fixes that).
DEFAULT_RULE = r".*(NIR|VIS)"
FARS = (1e-2, 1e-3, 1e-4)
RANKS = (1, 3, 5, 10, 20)


class NirVisList(ImageList):
    """NIR-VIS image list (``path label`` or ``path label domain``) with a configurable modality rule.

    ``layout="dvgface"``: the modality is the last ``NIR``/``VIS`` in the path (or ``modality_rule``,
    a regex / column); ``layout="dvg"``: DVG NeurIPS lists, column 2 with 0 = NIR, 1 = VIS.
    """

    paper = "Fu et al., DVG-Face (TPAMI 2021) / DVG (NeurIPS 2019) list files"

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None, layout: str = "dvgface",
                 modality_rule: int | str | None = None, modality_values: str | None = None,
                 image_size: int | None = 128, skip_corrupt: bool = False):
        if layout not in ("dvgface", "dvg"):
            raise ParameterError(f"layout must be 'dvgface' or 'dvg', got {layout!r}")
        if modality_rule in (None, ""):
            modality_rule = 2 if layout == "dvg" else DEFAULT_RULE
        if modality_values is None:
            modality_values = "NIR,VIS" if layout == "dvg" else "VIS,NIR"
        super().__init__(path, root, modality_rule=modality_rule, modality_values=modality_values,
                         image_size=image_size, skip_corrupt=skip_corrupt)


def _embed_dataset(model: Backbone | Embedder, data: Dataset, device: str, batch_size: int) -> Tensor:
    chunks = (torch.as_tensor(data.batch(list(range(s, min(s + batch_size, len(data)))))["image"])
              for s in range(0, len(data), batch_size))
    return embed_batches(model, chunks, device=device)


def dvg_metrics(gallery: Tensor, gallery_labels: Tensor, probe: Tensor, probe_labels: Tensor,
                ranks: Sequence[int] = RANKS, fars: Sequence[float] = FARS) -> tuple[dict[str, float], dict[str, Any]]:
    """DVG's evaluation through core's compat mode (``facerec.metrics.dvg_evaluation``).

    Returns flat metrics (``rank1``..., ``vr@far=1e-03``..., ``ap``, ``eer``) and artefacts (ROC points).
    """
    from facerec import metrics as M

    res = M.dvg_evaluation(gallery, gallery_labels, probe, probe_labels, ranks=ranks, fars=fars)
    out = {f"rank{k}": float(v) for k, v in res.rank.items()}
    out.update({f"vr@far={t:.0e}": float(v) for t, v in zip(fars, res.tpr_at_far)})
    out["ap"] = float(res.ap)
    out["eer"] = float(res.eer_raw)
    L = (torch.as_tensor(gallery_labels)[:, None] == torch.as_tensor(probe_labels)[None, :]).numpy().ravel()
    curve = M.roc(res.score_matrix.numpy().ravel(), L)
    return out, {"roc_fpr": np.asarray(curve.fpr), "roc_tpr": np.asarray(curve.tpr)}


def _read_fold_list(path: Path, root: Path, label_regex: str, image_size: int | None) -> ImageList:
    if not path.is_file():
        raise DataError(f"protocol list not found: {path}")
    text = path.read_text(encoding="utf-8")
    if all(len(line.split()) >= 2 for line in text.splitlines() if line.strip()):
        return ImageList(path, root, image_size=image_size)
    # Official CASIA lists hold paths only: the subject id comes from the path.
    rx = re.compile(label_regex)
    lines = []
    for lineno, line in enumerate(text.splitlines(), 1):
        rel = line.strip().replace("\\", "/")
        if not rel:
            continue
        m = rx.search(rel)
        if m is None:
            raise DataError(f"{path} line {lineno}: no subject id matching {label_regex!r} in {rel!r}")
        lines.append(f"{rel} {int(m.group(1))}")
    # ImageList reads files: hand it a labelled copy in the temporary directory.
    with tempfile.NamedTemporaryFile("w", suffix=f"_{path.name}", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        return ImageList(f.name, root, image_size=image_size)
    finally:
        os.unlink(f.name)


class CasiaNirVis(Protocol):
    """CASIA NIR-VIS 2.0 View 2: per fold a VIS gallery and NIR probes; rank-1 and VR@FAR, mean/std over folds.

    ``lists``: folder with ``gallery_pattern``/``probe_pattern`` files for folds 1..``folds``
    (DVG names ``NIR_VIS_gallery{fold}.txt`` / ``NIR_VIS_probe{fold}.txt``; official CASIA
    ``vis_gallery_{fold}.txt`` / ``nir_probe_{fold}.txt`` with the subject id parsed by ``label_regex``).
    """

    convention: ClassVar[str] = ("DVG evaluation: cosine over gallery x probe; closed-set rank-k; ROC over all "
                                 "pairs, VR@FAR=t is the TPR at the first ROC point with FAR > t; mean/std over folds")
    paper: ClassVar[str] = "Li et al., CASIA NIR-VIS 2.0 (CVPRW 2013); protocol as DVG-Face reports it"

    def __init__(self, root: str, lists: str | None = None, folds: int = 10,
                 gallery_pattern: str = "NIR_VIS_gallery{fold}.txt", probe_pattern: str = "NIR_VIS_probe{fold}.txt",
                 label_regex: str = r"(\d{5})", image_size: int | None = 128):
        self.root = Path(root)
        self.lists = Path(lists) if lists else self.root / "protocols"
        if not self.root.is_dir():
            raise DataError(f"CASIA NIR-VIS root is not a directory: {self.root}")
        if folds < 1:
            raise ParameterError(f"folds must be >= 1, got {folds}")
        self.folds = [(_read_fold_list(self.lists / gallery_pattern.format(fold=k), self.root, label_regex, image_size),
                       _read_fold_list(self.lists / probe_pattern.format(fold=k), self.root, label_regex, image_size))
                      for k in range(1, folds + 1)]

    def evaluate(self, model: Backbone | Embedder, *, device: str = "cpu", batch_size: int = 64,
                 progress: bool = False) -> EvalResult:
        features = {}
        for k, (gallery, probe) in enumerate(self.folds, 1):
            features[f"gallery{k}"] = _embed_dataset(model, gallery, device, batch_size)
            features[f"probe{k}"] = _embed_dataset(model, probe, device, batch_size)
        return self.evaluate_features(features)

    def evaluate_features(self, features: Mapping[str, Tensor]) -> EvalResult:
        per_fold, artefacts = [], {}
        for k, (gallery, probe) in enumerate(self.folds, 1):
            m, art = dvg_metrics(features[f"gallery{k}"], gallery.labels, features[f"probe{k}"], probe.labels)
            per_fold.append(m)
            artefacts[f"fold{k}"] = {**m, **art}
        keys = per_fold[0].keys()
        metrics = {f"{key}": float(np.mean([f[key] for f in per_fold])) for key in keys}
        metrics.update({f"{key}_std": float(np.std([f[key] for f in per_fold])) for key in keys})
        return EvalResult(metrics=metrics, artefacts=artefacts, convention=self.convention)
