"""Metric parity for DVG-Face: its evaluation mode reproduces the original's fixture number for number."""

from __future__ import annotations

import torch

from facerec.testing import load_fixture
from facerec_dvg.metrics import dvg_evaluation


def _check_dvg(name, parity_dir):
    fx = load_fixture(name, parity_dir)
    inp = fx.inputs()
    res = dvg_evaluation(inp["gallery"], inp["gallery_labels"], inp["probe"], inp["probe_labels"])
    fx.check("score_matrix", res.score_matrix)
    ranks = [res.rank[k] for k in (1, 3, 5, 10, 20)]
    fx.check("rank", torch.tensor(ranks, dtype=torch.float32))
    fx.check("tpr_at_far", torch.from_numpy(res.tpr_at_far))
    fx.check("ap", torch.tensor(res.ap, dtype=torch.float64))
    fx.check("eer_raw", torch.tensor(res.eer_raw, dtype=torch.float64))
    fx.check("eer_printed", torch.tensor(1.0 - res.eer_raw, dtype=torch.float64))


def test_parity_dvg_eval_1n_11(parity_dir):
    _check_dvg("dvg.eval_1n_11", parity_dir)


def test_parity_dvg_eval_1n_11_open(parity_dir):
    _check_dvg("dvg.eval_1n_11_open", parity_dir)
