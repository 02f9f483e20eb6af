"""Parity with sandwichfish/VirFace: fixture weights wrapped in the original checkpoint container
(``{'epoch', 'backbone', 'head', 'generator'}``, DataParallel ``module.`` prefixes on backbone/generator),
saved with torch.save and loaded through facerec.load_weights."""

from __future__ import annotations

import pytest
import torch

import facerec
from facerec.testing import load_fixture
from facerec_virface.evaluation import compat_best_threshold


def _save(tmp_path, prefix: str = "module.", **parts) -> str:
    ckpt = {"epoch": 3}
    for part, sd in parts.items():
        p = "" if part == "head" else prefix
        ckpt[part] = {p + k: v for k, v in sd.items()}
    path = tmp_path / "_epoch_2.pytorch"
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture(autouse=True)
def _strict_fp32():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_parity_virface_resnet18(parity_dir, tmp_path, prefix):
    fx = load_fixture("virface.resnet18", parity_dir)
    model = facerec.create("backbone", "virface-resnet18")
    facerec.load_weights(model, _save(tmp_path, prefix, backbone=fx.state_dict(), head={"weight": torch.zeros(4, 512)}))
    with torch.no_grad():
        fx.check("embedding", model.eval()(fx.inputs()["x"]))


def test_parity_virface_resnet50(parity_dir, tmp_path):
    fx = load_fixture("virface.resnet50", parity_dir)
    model = facerec.create("backbone", "virface-resnet50")
    facerec.load_weights(model, _save(tmp_path, backbone=fx.state_dict(), head={"weight": torch.zeros(4, 512)}))
    with torch.no_grad():
        fx.check("embedding", model.eval()(fx.inputs()["x"]))


def test_parity_virface_arcface_head(parity_dir, tmp_path):
    fx = load_fixture("virface.arcface_head", parity_dir)
    inp = fx.inputs()
    x, y, u, g = inp["x"], inp["label"], inp["unlabeled"], inp["generated"]
    head = facerec.create("head", "virinstance", embedding_size=512, num_classes=16)
    facerec.load_weights(head, _save(tmp_path, backbone={}, head=fx.state_dict()))
    head.eval()
    batch, labels = torch.cat([x, u]), torch.cat([y, torch.full((3,), -1)])  # unlabelled rows: label -1
    with torch.no_grad():
        fx.check("pretrain_logits", head(x, y).logits)  # no unlabelled rows: plain ArcFace
        fx.check("virclass_logits", head(batch, labels).logits)  # VirClass
        out = head(batch, labels, generated=g)  # VirInstance
    fx.check("virface_output_label", out.logits)
    fx.check("virface_output_unlabel", out.extras["instance_logits"])
    fx.check("virface_unlabel_label", out.extras["instance_targets"])


def test_parity_virface_generator(parity_dir, tmp_path):
    fx = load_fixture("virface.generator", parity_dir)
    gen = facerec.create("generator", "virface")
    facerec.load_weights(gen, _save(tmp_path, backbone={}, head={}, generator=fx.state_dict()))
    with torch.no_grad():
        x_rec, mean, logvar = gen.eval()(fx.inputs()["x"], gen_weight=True)
    fx.check("x_rec", x_rec)
    fx.check("mean", mean)
    fx.check("logvar", logvar)


def test_parity_virface_best_threshold_accuracy(parity_dir):
    fx = load_fixture("virface.best_threshold_accuracy", parity_dir)
    inp = fx.inputs()
    res = compat_best_threshold(inp["score"], inp["label"])
    fx.check("best_acc", torch.tensor([res.accuracy], dtype=torch.float64))
    fx.check("best_threshold", torch.tensor([res.threshold], dtype=torch.float64))
    fx.check("best_index", torch.tensor([res.index]))
