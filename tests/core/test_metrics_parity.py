"""Metric parity: each test reproduces one metric fixture of shared/parity number for number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facerec import metrics
from facerec.testing import load_fixture


def _unit_rows(n: int, d: int, freq: float, phase: float) -> np.ndarray:
    v = np.sin(freq * np.arange(n * d, dtype=np.float64) + phase).reshape(n, d)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _verification_inputs(fx) -> dict[str, torch.Tensor]:
    """The fixture's 6000 pairs rebuilt from its JSON formulas (the repo's copy leaves out the 6 MB of stored
    inputs that shared/parity holds; the outputs below only match if these are the same inputs)."""
    spec = fx.spec["inputs"]["input_emb1"]
    emb1 = _unit_rows(*spec["shape"], spec["D"], spec["E"])
    noise = _unit_rows(*spec["shape"], 0.029, 0.7)
    i = np.arange(len(emb1))
    same = (i // 300) % 2 == 0
    emb2 = same[:, None] * emb1 + (0.9 + 0.5 * np.sin(0.7 * i))[:, None] * noise
    emb2 /= np.linalg.norm(emb2, axis=1, keepdims=True)
    as32 = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return {"emb1": as32(emb1), "emb2": as32(emb2), "issame": torch.from_numpy(same)}


def test_parity_insightface_verification_10fold(parity_dir):
    fx = load_fixture("insightface.verification_10fold", parity_dir)
    inp = _verification_inputs(fx)
    res = metrics.insightface_verification(inp["emb1"], inp["emb2"], inp["issame"])
    fx.check("fold_accuracy", torch.from_numpy(res.fold_accuracy))
    fx.check("best_threshold", torch.from_numpy(res.fold_threshold))
    fx.check("best_threshold_index", torch.from_numpy(res.threshold_index))
    fx.check("accuracy_mean", torch.tensor([res.mean], dtype=torch.float64))
    fx.check("accuracy_std", torch.tensor([res.std], dtype=torch.float64))
    fx.check("tpr", torch.from_numpy(res.tpr))
    fx.check("fpr", torch.from_numpy(res.fpr))
    fx.check("dist", torch.from_numpy(metrics.squared_l2(inp["emb1"], inp["emb2"])))


def test_verification_inputs_match_the_shared_fixture():
    shared = Path(__file__).resolve().parents[3] / "shared" / "parity"
    if not (shared / "insightface.verification_10fold.safetensors").is_file():
        pytest.skip(f"the full fixture (with its stored inputs) is not at {shared}")
    full = load_fixture("insightface.verification_10fold", shared)
    stored, rebuilt = full.inputs(), _verification_inputs(full)
    assert all(torch.equal(rebuilt[k], stored[k]) for k in ("emb1", "emb2", "issame"))


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
