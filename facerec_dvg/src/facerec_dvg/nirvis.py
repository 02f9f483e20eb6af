"""NIR-VIS data and evaluation: list files with a configurable modality rule, the DVG evaluation
(rank-k over a VIS gallery, VR@FAR over all gallery x probe pairs) and the CASIA NIR-VIS 2.0
ten-fold protocol (mean and std over folds)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from facerec.data.formats import ImageList
from facerec.errors import ParameterError
from facerec.protocols.identification import IdentificationProtocol
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

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        layout: str = "dvgface",
        modality_rule: int | str | None = None,
        modality_values: str | None = None,
        image_size: int | None = 128,
        skip_corrupt: bool = False,
    ):
        if layout not in ("dvgface", "dvg"):
            raise ParameterError(f"layout must be 'dvgface' or 'dvg', got {layout!r}")
        if modality_rule in (None, ""):
            modality_rule = 2 if layout == "dvg" else DEFAULT_RULE
        if modality_values is None:
            modality_values = "NIR,VIS" if layout == "dvg" else "VIS,NIR"
        super().__init__(
            path,
            root,
            modality_rule=modality_rule,
            modality_values=modality_values,
            image_size=image_size,
            skip_corrupt=skip_corrupt,
        )


def dvg_metrics(
    gallery: Tensor,
    gallery_labels: Tensor,
    probe: Tensor,
    probe_labels: Tensor,
    ranks: Sequence[int] = RANKS,
    fars: Sequence[float] = FARS,
) -> tuple[dict[str, float], dict[str, Any]]:
    """DVG's evaluation (:func:`facerec_dvg.metrics.dvg_evaluation`).

    Returns flat metrics (``rank1``..., ``vr@far=1e-03``..., ``ap``, ``eer``) and artefacts (ROC points).
    """
    from facerec import metrics as M

    from .metrics import dvg_evaluation

    res = dvg_evaluation(gallery, gallery_labels, probe, probe_labels, ranks=ranks, fars=fars)
    out = {f"rank{k}": float(v) for k, v in res.rank.items()}
    out.update({f"vr@far={t:.0e}": float(v) for t, v in zip(fars, res.tpr_at_far)})
    out["ap"] = float(res.ap)
    out["eer"] = float(res.eer_raw)
    L = (torch.as_tensor(gallery_labels)[:, None] == torch.as_tensor(probe_labels)[None, :]).numpy().ravel()
    curve = M.roc(res.score_matrix.numpy().ravel(), L)
    return out, {"roc_fpr": np.asarray(curve.fpr), "roc_tpr": np.asarray(curve.tpr)}


class CasiaNirVis(IdentificationProtocol):
    """CASIA NIR-VIS 2.0 View 2 ten-fold protocol (VIS gallery, NIR probes) with DVG's conventions.

    Core's identification protocol with DVG-Face's reporting: rank-1/3/5/10/20, VR@FAR 1e-2/1e-3/1e-4
    with DVG's rule (TPR at the first ROC point with FAR > t), mean and std over folds. ``data``
    holds the images and the fold lists (``NIR_VIS_gallery{k}.txt`` / ``NIR_VIS_probe{k}.txt``,
    ``vis_gallery_{k}.txt`` / ``nir_probe_{k}.txt`` ...; path-only lines take the identity from the
    parent folder). Images are used at their stored size (aligned 144x144 faces, centre-cropped to
    128 by LightCNN's input spec) unless ``image_size`` is given.
    """

    paper: ClassVar[str] = "Li et al., CASIA NIR-VIS 2.0 (CVPRW 2013); evaluated as in DVG / DVG-Face"

    def __init__(
        self,
        data: str,
        gallery: str | None = None,
        probe: str | None = None,
        images: str | None = None,
        image_size: int | None = None,
        flip: bool = False,
        skip_missing: bool = False,
    ):
        super().__init__(
            data,
            gallery,
            probe,
            images=images,
            image_size=image_size,
            flip=flip,
            skip_missing=skip_missing,
            ranks=RANKS,
            fars=FARS,
            far_rule="above",
        )
