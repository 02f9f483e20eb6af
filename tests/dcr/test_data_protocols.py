"""DCR data layouts and protocols on a small root in the original's layout."""

from __future__ import annotations

import facerec
import pytest
import torch
import torch.nn.functional as F
from facerec.errors import DataError, ParameterError
from facerec.testing import load_fixture

from facerec_dcr.data import CasiaWebFace, SCface, held_out_subjects, read_pair_list
from facerec_dcr.evaluation import verification_metrics
from facerec_dcr.model import DCR


def pixels(x):  # a fixed, training-free embedder: coarse colour layout
    return F.adaptive_avg_pool2d(x, 4).flatten(1) - 0.5


def tiny_dcr(**kw):
    torch.manual_seed(0)
    return DCR(num_classes=20, layers=(1, 1, 1, 1), **kw).eval()


def test_casia_ten_fold_subject_split(dcr_root):
    full = facerec.create("dataset", "dcr-casia", root=str(dcr_root))
    assert len(full) == 60 and full.num_classes == 20
    lo, hi = held_out_subjects(3, 20)
    val = CasiaWebFace(dcr_root, split="val", subset=3)
    train = CasiaWebFace(dcr_root, split="train", subset=3)
    assert set(val.labels.tolist()) == set(range(lo, hi)) == {6, 7}
    assert len(train) + len(val) == 60 and not set(train.labels.tolist()) & set(val.labels.tolist())
    item = val[0]
    assert item["image"].shape == (3, 120, 120) and item["label"] == 6
    with pytest.raises(ParameterError, match="subset"):
        CasiaWebFace(dcr_root, subset=10)
    with pytest.raises(ParameterError, match="val split"):
        CasiaWebFace(dcr_root, split="val")


def test_pair_list_errors_name_file_and_line(dcr_root, tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("a.jpg b.jpg 1\na.jpg b.jpg yes\n")
    with pytest.raises(DataError, match=r"pairs.txt line 2"):
        read_pair_list(bad, tmp_path)
    lfw = dcr_root / "LFW"
    missing = tmp_path / "missing.txt"
    missing.write_text((lfw / "lfw_test_pair.txt").read_text() + "P100/P100_0001.jpg nobody/x.jpg 0\n")
    with pytest.raises(DataError, match="missing images"):
        read_pair_list(missing, lfw / "LFW_120x120_120")
    pl = read_pair_list(missing, lfw / "LFW_120x120_120", skip_missing=True)
    assert pl.skipped == 1 and len(pl.first) == 40


def test_lfw_lowres_protocol_scores_every_resolution(dcr_root):
    proto = facerec.create("protocol", "dcr-lfw-lowres", root=str(dcr_root))
    res = proto.evaluate(pixels, batch_size=16)
    m = res.metrics
    assert m["acc_hr"] == 1.0  # genuine pairs are near-identical images under a colour-layout embedder
    assert {f"acc_{s}" for s in (8, 12, 16, 20)} <= set(m) and m["pairs"] == 40
    assert all(0.0 <= m[f"acc_{s}"] <= 1.0 for s in (8, 12, 16, 20))
    assert len(res.artefacts["fold_accuracy"]["acc_8"]) == 10
    # a DCR model adds branch scores beside the trunk's
    m2 = proto.evaluate(tiny_dcr(), batch_size=16).metrics
    assert {"branch_acc_8", "branch_acc_hr", "branch_acc_mean", "acc_mean"} <= set(m2)


def test_lfw_lowres_tensor_path_agrees_with_pil_path(dcr_root):
    pil = facerec.create("protocol", "dcr-lfw-lowres", root=str(dcr_root), lowres="pil").evaluate(pixels).metrics
    ten = facerec.create("protocol", "dcr-lfw-lowres", root=str(dcr_root), lowres="tensor").evaluate(pixels).metrics
    assert abs(pil["acc_hr"] - ten["acc_hr"]) < 1e-9
    assert all(abs(pil[f"acc_{s}"] - ten[f"acc_{s}"]) <= 0.1 for s in (8, 12, 16, 20))


def test_parity_dcr_lfw_10fold_through_the_protocol_scoring(parity_dir):
    """The protocol's scoring (cosine of HR/LR embeddings -> DCR 10-fold) reproduces the fixture."""
    fx = load_fixture("dcr.lfw_10fold", parity_dir)
    inp = fx.inputs()
    s = inp["scores"].double()
    emb1 = torch.zeros(len(s), 2, dtype=torch.float64)
    emb1[:, 0] = 1.0
    emb2 = torch.stack([s, (1 - s * s).sqrt()], 1)  # cos(emb1, emb2) = score
    metrics, art = verification_metrics(pixels, emb1.float(), {8: emb2.float()}, inp["labels"])
    fx.check("fold_acc", torch.tensor(art["fold_accuracy"]["acc_8"], dtype=torch.float64))
    fx.check("fold_threshold", torch.tensor(art["fold_threshold"]["acc_8"], dtype=torch.float64))
    fx.check("acc_mean", torch.tensor(metrics["acc_8"], dtype=torch.float64))
    fx.check("acc_std", torch.tensor(metrics["acc_std_8"], dtype=torch.float64))
    fx.check("thr_mean", torch.tensor(metrics["threshold_8"], dtype=torch.float64))


def test_scface_split_and_rank1_per_distance(dcr_root):
    train = SCface(dcr_root, split="train")
    test = facerec.create("dataset", "dcr-scface", root=str(dcr_root), split="test")
    assert set(train.labels.tolist()) == {0, 1, 2, 3} and min(test.labels.tolist()) == 50
    assert len(test) == 8 * 16 and {test[i]["distance"] for i in range(16)} == {0, 1, 2, 3}
    proto = facerec.create("protocol", "dcr-scface", root=str(dcr_root))
    m = proto.evaluate(pixels).metrics
    assert m["gallery"] == 8
    assert m["rank1_d3"] == 1.0 and all(0.0 <= m[f"rank1_d{d}"] <= 1.0 for d in (1, 2, 3))
    m2 = proto.evaluate(tiny_dcr()).metrics
    assert {"branch_rank1_d1", "branch_rank1_d2", "branch_rank1_d3"} <= set(m2)


def test_casia_retrieval_protocol(dcr_root):
    proto = facerec.create("protocol", "dcr-casia-retrieval", root=str(dcr_root), subset=0)
    m = proto.evaluate(pixels).metrics
    assert set(m) == {f"precision_at_1_{s}" for s in (8, 12, 16, 20)} | {"criterion"}
    assert m["criterion"] == pytest.approx(sum(m[f"precision_at_1_{s}"] for s in (8, 12, 16, 20)) / 4)
    assert m["precision_at_1_20"] >= m["precision_at_1_8"] - 1e-9
    with pytest.raises(ParameterError, match="self_exclusion"):
        facerec.create("protocol", "dcr-casia-retrieval", root=str(dcr_root), self_exclusion="first")


def test_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="DCR data root"):
        facerec.create("protocol", "dcr-lfw-lowres", root=str(tmp_path))
