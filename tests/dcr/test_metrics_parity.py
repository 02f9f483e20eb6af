"""Metric parity for DCR: its evaluation mode reproduces the original's fixture number for number."""

from __future__ import annotations

import torch

from facerec.testing import load_fixture
from facerec_dcr.metrics import dcr_verification


def test_parity_dcr_lfw_10fold(parity_dir):
    fx = load_fixture("dcr.lfw_10fold", parity_dir)
    inp = fx.inputs()
    res = dcr_verification(inp["scores"], inp["labels"])
    fx.check("fold_acc", torch.from_numpy(res.fold_accuracy))
    fx.check("fold_threshold", torch.from_numpy(res.fold_threshold))
    fx.check("acc_mean", torch.tensor(res.mean, dtype=torch.float64))
    fx.check("acc_std", torch.tensor(res.std, dtype=torch.float64))
    fx.check("thr_mean", torch.tensor(float(res.fold_threshold.mean()), dtype=torch.float64))
