"""Margin heads against hand-computed formulas; Partial FC at rate 1 equals the full head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import facerec
from facerec.errors import ParameterError
from facerec.heads import ArcFaceHead, CombinedMarginHead, CosFaceHead, NormSoftmaxHead, PartialFCHead, SoftmaxHead


def _setup(head, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, head.embedding_size, generator=g, dtype=torch.float64).float()
    y = torch.arange(n) % head.num_classes
    return x, y


def _cos(head, x):
    return F.normalize(x.double()) @ F.normalize(head.weight.detach().double()).T


def test_arcface_target_logit_is_s_cos_theta_plus_m():
    head = ArcFaceHead(8, 5, s=32.0, m=0.5)
    x, y = _setup(head)
    out = head(x, y)
    cos = _cos(head, x)
    rows = torch.arange(len(y))
    theta = torch.acos(cos[rows, y])
    expected = 32.0 * torch.cos(theta + 0.5)
    # the fallback only changes rows with cos <= cos(pi - m); random data is far from there
    assert (cos[rows, y] > math.cos(math.pi - 0.5)).all()
    torch.testing.assert_close(out.logits[rows, y].double(), expected, atol=1e-4, rtol=1e-5)
    other = torch.ones_like(cos, dtype=torch.bool)
    other[rows, y] = False
    torch.testing.assert_close(out.logits[other].double(), 32.0 * cos[other], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))


def test_arcface_fallback_and_easy_margin_branches():
    m = 0.5
    head = ArcFaceHead(2, 2, s=1.0, m=m)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.tensor([0.3, 1.2, 2.0, 2.9])  # theta; 2.9 + 0.5 > pi
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    y = torch.zeros(4, dtype=torch.long)
    cos = torch.cos(angles)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    expected = torch.where(cos > th, torch.cos(angles + m), cos - mm)
    torch.testing.assert_close(head(x, y).logits[:, 0], expected, atol=1e-5, rtol=0)
    assert cos[3] <= th  # the last row really takes the fallback branch
    easy = ArcFaceHead(2, 2, s=1.0, m=m, easy_margin=True)
    easy.weight.data.copy_(head.weight.data)
    torch.testing.assert_close(
        easy(x, y).logits[:, 0], torch.where(cos > 0, torch.cos(angles + m), cos), atol=1e-5, rtol=0
    )
    plain = ArcFaceHead(2, 2, s=1.0, m=m, fallback=False)
    plain.weight.data.copy_(head.weight.data)
    torch.testing.assert_close(plain(x, y).logits[:, 0], torch.cos(angles + m), atol=1e-5, rtol=0)


def test_cosface_and_norm_softmax():
    head = CosFaceHead(8, 4, s=30.0, m=0.35)
    x, y = _setup(head, seed=1)
    cos = _cos(head, x)
    rows = torch.arange(len(y))
    expected = 30.0 * cos
    expected[rows, y] = 30.0 * (cos[rows, y] - 0.35)
    torch.testing.assert_close(head(x, y).logits.double(), expected, atol=1e-4, rtol=1e-5)
    norm = NormSoftmaxHead(8, 4, s=10.0)
    norm.weight.data.copy_(head.weight.data)
    torch.testing.assert_close(norm(x, y).logits.double(), 10.0 * cos, atol=1e-4, rtol=1e-5)


def test_combined_margin_formula_and_special_cases():
    head = CombinedMarginHead(8, 4, s=16.0, m1=1.2, m2=0.2, m3=0.1)
    x, y = _setup(head, seed=2)
    cos = _cos(head, x)
    rows = torch.arange(len(y))
    theta = torch.acos(cos[rows, y])
    expected = 16.0 * (torch.cos(1.2 * theta + 0.2) - 0.1)
    torch.testing.assert_close(head(x, y).logits[rows, y].double(), expected, atol=1e-4, rtol=1e-5)
    cosface = CombinedMarginHead(8, 4, s=16.0, m1=1.0, m2=0.0, m3=0.35)
    ref = CosFaceHead(8, 4, s=16.0, m=0.35)
    cosface.weight.data.copy_(head.weight.data)
    ref.weight.data.copy_(head.weight.data)
    torch.testing.assert_close(cosface(x, y).logits, ref(x, y).logits)


def test_softmax_head_and_unknown_labels_are_ignored():
    head = SoftmaxHead(8, 3)
    x, y = _setup(head, seed=3)
    out = head(x, y)
    torch.testing.assert_close(out.logits, x @ head.fc.weight.T + head.fc.bias)
    arc = ArcFaceHead(8, 3, s=8.0, m=0.3)
    y2 = y.clone()
    y2[0] = -1
    out2 = arc(x, y2)
    assert torch.allclose(out2.logits[0], 8.0 * _cos(arc, x)[0].float(), atol=1e-5)  # no margin on row 0
    torch.testing.assert_close(out2.loss, F.cross_entropy(out2.logits[1:], y2[1:]))


@pytest.mark.parametrize(
    "margin,kwargs,ref_cls", [("arcface", {"m": 0.4}, ArcFaceHead), ("cosface", {"m": 0.3}, CosFaceHead)]
)
def test_partial_fc_rate_one_equals_full_head(margin, kwargs, ref_cls):
    torch.manual_seed(0)
    pfc = PartialFCHead(16, 10, sample_rate=1.0, margin=margin, s=20.0, **kwargs)
    ref = ref_cls(16, 10, s=20.0, **kwargs)
    ref.weight.data.copy_(pfc.weight.data)
    x, y = _setup(ref, n=12, seed=4)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_p, out_r = pfc(xa, y), ref(xb, y)
    torch.testing.assert_close(out_p.logits, out_r.logits)
    torch.testing.assert_close(out_p.loss, out_r.loss)
    out_p.loss.backward()
    out_r.loss.backward()
    torch.testing.assert_close(pfc.weight.grad, ref.weight.grad)
    torch.testing.assert_close(xa.grad, xb.grad)


def test_partial_fc_sampling_keeps_positives_and_samples_rate():
    torch.manual_seed(0)
    pfc = PartialFCHead(8, 100, sample_rate=0.2, margin="arcface", s=16.0)
    x = torch.randn(10, 8)
    y = torch.tensor([3, 97, 50, 3, 12, 99, 0, 41, 41, 7])
    index, remapped = pfc._sample(y)
    assert index is not None and len(index) == 20
    assert set(y.tolist()) <= set(index.tolist())
    torch.testing.assert_close(index[remapped], y)  # remapped labels point at the right centres
    out = pfc(x, y)
    out.loss.backward()
    touched = (pfc.weight.grad.abs().sum(1) > 0).nonzero().squeeze(1)
    assert set(touched.tolist()) <= set(range(100)) and len(touched) <= 20 + 0
    # exact value: margin CE over the sampled centres only
    torch.manual_seed(1)
    pfc.zero_grad()
    torch.manual_seed(5)
    out = pfc(x, y)
    torch.manual_seed(5)
    index, remapped = pfc._sample(y)
    ref = ArcFaceHead(8, 20, s=16.0)
    ref.weight.data.copy_(pfc.weight.data[index])
    torch.testing.assert_close(out.loss, ref(x, remapped).loss)
    pfc.eval()  # evaluation uses every centre
    assert pfc(x, y).logits.shape == (10, 100)


@pytest.mark.parametrize("name", ["softmax", "norm-softmax", "cosface", "combined", "partial-fc"])
def test_heads_are_registered(name):
    assert facerec.create("head", name, embedding_size=4, num_classes=2) is not None


def test_heads_registered_and_validate_parameters():
    head = facerec.create("head", "arcface", embedding_size=8, num_classes=3, m=0.3)
    assert isinstance(head, ArcFaceHead) and head.m == 0.3
    with pytest.raises(ParameterError, match="sample_rate"):
        facerec.create("head", "partial-fc", embedding_size=4, num_classes=2, sample_rate=0.0)
    with pytest.raises(ParameterError, match="margin"):
        facerec.create("head", "partial-fc", embedding_size=4, num_classes=2, margin="sphere")
    assert "ArcFace" in facerec.describe("head", "arcface")["paper"]


def test_parity_virface_arcface_head(parity_dir):
    """Core's ArcFace (th/mm fallback) reproduces VirFace's ArcMarginProduct (pretrain and the
    virtual-class logits, where unlabelled rows act as extra class centres)."""
    from facerec.testing import load_fixture

    fx = load_fixture("virface.arcface_head", parity_dir)
    inp = fx.inputs()
    head = ArcFaceHead(512, 16, s=32.0, m=0.5).eval()
    head.load_state_dict(fx.state_dict(), strict=True)
    with torch.no_grad():
        fx.check("pretrain_logits", head(inp["x"], inp["label"]).logits)
        centres = torch.cat([head.weight, F.normalize(inp["unlabeled"])])
        fx.check("virclass_logits", head.margin_logits(head.cosine(inp["x"], centres), inp["label"]))
        target = torch.arange(16, 19).repeat(2)
        fx.check("virface_output_unlabel", head.margin_logits(head.cosine(inp["generated"], centres), target))
