"""Metric parity: each test reproduces one metric fixture of shared/parity number for number."""

from __future__ import annotations

import numpy as np
import torch

from facerec import metrics
from facerec.testing import load_fixture


def test_parity_insightface_verification_10fold(parity_dir):
    fx = load_fixture("insightface.verification_10fold", parity_dir)
    inp = fx.inputs()
    res = metrics.insightface_verification(inp["emb1"], inp["emb2"], inp["issame"])
    fx.check("fold_accuracy", torch.from_numpy(res.fold_accuracy))
    fx.check("best_threshold", torch.from_numpy(res.fold_threshold))
    fx.check("best_threshold_index", torch.from_numpy(res.threshold_index))
    fx.check("accuracy_mean", torch.tensor([res.mean], dtype=torch.float64))
    fx.check("accuracy_std", torch.tensor([res.std], dtype=torch.float64))
    fx.check("tpr", torch.from_numpy(res.tpr))
    fx.check("fpr", torch.from_numpy(res.fpr))
    fx.check("dist", torch.from_numpy(metrics.squared_l2(inp["emb1"], inp["emb2"])))


def test_parity_insightface_ijb_tar_at_far(parity_dir):
    fx = load_fixture("insightface.ijb_tar_at_far", parity_dir)
    inp = fx.inputs()
    fars = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    curve = metrics.roc(inp["score"], inp["label"], drop_intermediate=True)
    tar = metrics.tar_at_far(inp["score"], inp["label"], fars, rule="nearest", curve=curve)
    fx.check("tar", torch.from_numpy(tar))
    idx = metrics._nearest_index(curve.fpr, np.asarray(fars))
    fx.check("selected_fpr", torch.from_numpy(curve.fpr[idx]))
    fx.check("selected_index_flipped", torch.from_numpy(curve.fpr.size - 1 - idx))
    fx.check("n_roc_points", torch.tensor([curve.fpr.size]))
    fx.check("roc_auc", torch.tensor([metrics.auc(inp["score"], inp["label"])], dtype=torch.float64))
    # the same call without a precomputed curve gives the same numbers
    assert np.array_equal(metrics.tar_at_far(inp["score"], inp["label"], fars, rule="nearest"), tar)


def test_parity_virface_best_threshold_accuracy(parity_dir):
    fx = load_fixture("virface.best_threshold_accuracy", parity_dir)
    inp = fx.inputs()
    res = metrics.best_threshold_accuracy(inp["score"], inp["label"])
    fx.check("best_acc", torch.tensor([res.accuracy], dtype=torch.float64))
    fx.check("best_threshold", torch.tensor([res.threshold], dtype=torch.float64))
    fx.check("best_index", torch.tensor([res.index]))
