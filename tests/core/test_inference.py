"""The fast inference path equals the eager forward and really folds BatchNorm."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import facerec
from facerec.api import Backbone, InputSpec
from facerec.inference import embed_tensor, fold_batchnorm, optimize_for_inference


def _randomise_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def test_small_cnn_folded_equals_eager():
    model = _randomise_bn(facerec.create("backbone", "small-cnn", width=8, image_size=32))
    fast = optimize_for_inference(model)
    assert isinstance(fast, type(model)) and fast is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded away
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.rand(6, 3, 32, 32)
    with torch.inference_mode():
        ref = model.embed(x)
        got = fast.embed(x)
    assert float((ref - got).abs().max()) <= 1e-4 * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(
        embed_tensor(fast, x, batch_size=4, flip=True),
        embed_tensor(model, x, batch_size=4, flip=True),
        atol=1e-4,
        rtol=1e-4,
    )


class _Branchy(Backbone):
    """BN after a conv whose output is also used elsewhere: must NOT be folded."""

    input_spec = InputSpec(size=16)
    embedding_size = 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return (self.bn(y) + y).mean((2, 3))


def test_shared_output_is_not_folded_and_result_is_equal():
    model = _randomise_bn(_Branchy())
    folded, n = fold_batchnorm(model)
    assert n == 0
    fast = optimize_for_inference(model)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fast.embed(x), model.embed(x), atol=1e-5, rtol=1e-5)


class _Untraceable(Backbone):
    """Data-dependent control flow: fx cannot trace it; Sequential pairs are still folded."""

    input_spec = InputSpec(size=16)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, x):
        y = self.body(x)
        if float(y.sum()) > -1e9:  # data-dependent branch
            y = y * 1.0
        return y.mean((2, 3))


def test_untraceable_model_uses_sequential_fallback():
    model = _randomise_bn(_Untraceable())
    _, n = fold_batchnorm(model)
    assert n == 1
    fast = optimize_for_inference(model)
    x = torch.rand(3, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fast.embed(x), model.embed(x), atol=1e-5, rtol=1e-5)


class _Block(nn.Module):
    """conv -> BN -> + x inside a block of its own (not adjacent children of a Sequential)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x)) + x


class _AutocastTop(Backbone):
    """Like insightface's IResNet: the top level's autocast on ``x.device`` defeats tracing."""

    input_spec = InputSpec(size=16)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(_Block(), _Block())

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=x.device.type == "cuda"):
            return self.blocks(self.stem(x)).mean((2, 3))


def test_blocks_of_an_untraceable_model_are_still_folded():
    model = _randomise_bn(_AutocastTop())
    folded, n = fold_batchnorm(model)
    assert n == 2
    assert all(isinstance(b.bn, nn.Identity) for b in folded.blocks)
    x = torch.rand(3, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(folded.embed(x), model.embed(x), atol=1e-5, rtol=1e-5)


def test_a_wrong_optimisation_is_rejected(monkeypatch):
    import facerec.inference as inf

    torch.manual_seed(0)  # unseeded, some random nets had outputs so small that the broken one passed
    model = _randomise_bn(facerec.create("backbone", "small-cnn", width=4, image_size=16))

    def broken(m):  # simulate a folding bug: drop BN without folding it
        m = inf.copy.deepcopy(m)
        m.features[0][1] = nn.Identity()
        return m, 1

    monkeypatch.setattr(inf, "fold_batchnorm", broken)
    with pytest.warns(UserWarning, match="differs"):
        fast = inf.optimize_for_inference(model)
    assert fast is model


class _IllConditioned(Backbone):
    """Embeddings that are small differences of large activations (as in collapsed random deep nets):
    the fp32 forward is off by more than 1e-4 (relative) from the float64 one."""

    input_spec = InputSpec(size=16)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        with torch.no_grad():  # channel pairs with nearly equal large filters
            base = torch.randn(8, 3, 3, 3) * 1e5
            self.conv.weight[0::2] = base
            self.conv.weight[1::2] = base + torch.randn(8, 3, 3, 3)

    def forward(self, x):
        y = self.conv(x)
        return (y[:, 1::2] - y[:, 0::2]).mean((2, 3))


class _ComputedInFloat64(_IllConditioned):
    """The same net, computed in float64: an 'optimisation' more exact than the eager forward."""

    def forward(self, x):
        return super(_ComputedInFloat64, self.double()).forward(x.double()).float()


def test_the_check_measures_against_float64_not_against_an_inaccurate_eager_forward(monkeypatch):
    import facerec.inference as inf

    torch.manual_seed(0)
    model = _IllConditioned().eval()
    x = torch.rand(4, 3, 16, 16)

    def exact_fold(m):
        out = inf.copy.deepcopy(m)
        out.__class__ = _ComputedInFloat64
        return out, 0

    monkeypatch.setattr(inf, "fold_batchnorm", exact_fold)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "differs ... using the eager model"
        fast = inf.optimize_for_inference(model, example=x)
    assert isinstance(fast, _ComputedInFloat64)
    with torch.inference_mode():
        got, eager = fast.embed(x).double(), model.embed(x).double()
    exact = inf.float64_output(model, x)
    scale = float(exact.abs().max())
    # compared with the eager fp32 output it would have been rejected; it is the more exact of the two
    assert float((got - eager).abs().max()) / scale > 1e-4
    assert float((got - exact).abs().max()) < float((eager - exact).abs().max()) / 10


class _Tiny(Backbone):
    """Two convolutions with BatchNorm: small enough that torch.compile's C++ build stays short."""

    input_spec = InputSpec(size=16)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
        )

    def forward(self, x):
        return self.body(x).mean((2, 3))


def test_compiled_forward_pads_short_batches_and_equals_eager():
    torch.manual_seed(0)
    model = _randomise_bn(_Tiny())
    fast = optimize_for_inference(model, compile=True, batch_size=4)
    assert fast.facerec_batch == 4 and fast.facerec_optimized
    x = torch.rand(10, 3, 16, 16)  # batches of 3 (padded to 4) and, with flip, 6 (split into 4 + 2)
    torch.testing.assert_close(
        embed_tensor(fast, x, batch_size=3, flip=True),
        embed_tensor(model, x, batch_size=3, flip=True),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_is_checked_by_cosine_and_says_where_it_is_emulated(precision):
    import facerec.inference as inf

    torch.manual_seed(0)
    model = _randomise_bn(facerec.create("backbone", "small-cnn", width=8, image_size=32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = optimize_for_inference(model, precision=precision)
    why = inf.low_precision_support("cpu", precision)
    assert (why is None) == (not any(precision in str(w.message) for w in caught))
    x = torch.rand(6, 3, 32, 32)
    got, ref = embed_tensor(fast, x), embed_tensor(model, x)
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    assert float(cos.min()) >= inf.LOW_PRECISION_MIN_COSINE
    if fast is not model:  # autocast really ran: low precision rounding shows, unlike the fp32 fold
        assert float((got - ref).abs().max()) > 1e-5


def test_a_low_precision_forward_too_inexact_falls_back_to_fp32(monkeypatch):
    import facerec.inference as inf

    monkeypatch.setattr(inf, "LOW_PRECISION_MIN_COSINE", 1.0 + 1e-9)  # nothing in bf16 can pass
    model = _randomise_bn(facerec.create("backbone", "small-cnn", width=8, image_size=32))
    with pytest.warns(UserWarning, match="bf16 forward differs"):
        fast = optimize_for_inference(model, precision="bf16")
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(embed_tensor(fast, x), embed_tensor(model, x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="precision must be"):
        optimize_for_inference(model, precision="int4")
