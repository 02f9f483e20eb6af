"""Winograd 3x3 convolutions of the CPU inference path: exactness against float64, tuning, fallbacks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import facerec.winograd as wg
from facerec.inference import optimize_for_inference
from facerec.winograd import WinogradConv2d, eligible, replace_convs, transform_weight, winograd_conv


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("padding,size", [(1, 14), (1, 9), (0, 11), (1, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_matches_float64_convolution(m, padding, size, bias):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(3, 40, size, size + 2, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(48, 40, 3, 3, generator=g) / 20
    b = torch.randn(48, generator=g) if bias else None
    ref = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=padding)
    got = winograd_conv(x, transform_weight(w, m), b, m, padding)
    assert got.shape == ref.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    direct = F.conv2d(x, w, b, padding=padding)
    # F(2x2) is about as exact as the direct kernel; F(4x4) loses about one digit
    assert _rel(got, ref) < (4 * max(_rel(direct, ref), 1e-7) if m == 2 else 5e-5)


def test_only_plain_3x3_stride_1_convs_with_enough_channels_are_eligible():
    assert eligible(nn.Conv2d(64, 64, 3, padding=1))
    assert eligible(nn.Conv2d(64, 128, 3, padding=0, bias=False))
    assert not eligible(nn.Conv2d(64, 64, 3, stride=2, padding=1))
    assert not eligible(nn.Conv2d(64, 64, 1))
    assert not eligible(nn.Conv2d(64, 64, 3, padding=1, groups=2))
    assert not eligible(nn.Conv2d(64, 64, 3, padding=2))
    assert not eligible(nn.Conv2d(3, 64, 3, padding=1))
    assert not eligible(nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="not a 3x3 stride-1"):
        WinogradConv2d(nn.Conv2d(64, 64, 1))


def test_layer_tunes_once_per_shape_and_is_direct_under_autograd():
    conv = nn.Conv2d(32, 32, 3, padding=1)
    layer = WinogradConv2d(conv)
    x = torch.randn(2, 32, 12, 12)
    with torch.inference_mode():
        ref = conv(x)
        out = layer(x)
        assert set(layer.chosen.values()) <= {0, 2, 4} and len(layer.chosen) == 1
        layer(torch.randn(5, 32, 12, 12))  # another batch size: same (C, H, W), no new tuning
        assert len(layer.chosen) == 1
        layer(torch.randn(2, 32, 10, 10))
        assert len(layer.chosen) == 2
    assert _rel(out, ref) < 5e-5
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(layer(xg), F.conv2d(xg, conv.weight, conv.bias, padding=1), rtol=0, atol=0)
    layer.force = 4
    with torch.inference_mode():
        assert _rel(layer(x), ref) < 5e-5 and len(layer.chosen) == 2
    # state dict keys are those of the Conv2d it replaces (the transformed filters are not saved)
    assert set(layer.state_dict()) == set(conv.state_dict())


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 48, 3, padding=1))
    def forward(self, x):
        return self.body(self.stem(x)).mean((2, 3))


def _net() -> _Net:
    torch.manual_seed(0)
    net = _Net()
    bn = net.body[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_optimize_for_inference_uses_winograd_on_cpu_and_stays_within_tolerance():
    net = _net()
    x = torch.rand(4, 3, 20, 20)
    fast = optimize_for_inference(net, example=x)
    layers = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert len(layers) == 2 and layers[0].choices == (0, 2, 4)
    with torch.inference_mode():
        assert _rel(fast(x), net(x)) < 1e-4
    plain = optimize_for_inference(net, example=x, winograd=False)
    assert not any(isinstance(m, WinogradConv2d) for m in plain.modules())


def test_an_inaccurate_winograd_setting_falls_back_to_a_more_exact_one(monkeypatch):
    real = wg.winograd_conv

    def broken_f4(x, u, bias, m, padding, workspace=None):  # a wrong F(4x4): must be caught by the check
        y = real(x, u, bias, m, padding, workspace)
        return y * 1.01 if m == 4 else y

    monkeypatch.setattr(wg, "winograd_conv", broken_f4)
    net = _net()
    x = torch.rand(4, 3, 20, 20)
    fast = optimize_for_inference(net, example=x)
    layers = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert layers and all(m.choices == (0, 2) for m in layers)
    with torch.inference_mode():
        assert _rel(fast(x), net(x)) < 1e-4


def test_replace_convs_swaps_only_eligible_layers():
    net = _net()
    assert replace_convs(net) == 2
    assert isinstance(net.stem, nn.Conv2d) and not isinstance(net.stem, WinogradConv2d)


def test_only_the_chosen_transformed_filters_are_kept_after_tuning():
    layer = WinogradConv2d(nn.Conv2d(32, 32, 3, padding=1))
    with torch.inference_mode():
        layer(torch.randn(2, 32, 12, 12))
    kept = {m for m, _ in layer._transformed}
    assert kept == set(layer.chosen.values()) - {0}
    layer.force = 4
    with torch.inference_mode():
        layer(torch.randn(2, 32, 12, 12))
    assert (4, torch.float32) in layer._transformed


def test_layers_of_the_same_geometry_share_one_tuning(monkeypatch):
    calls = []
    real = WinogradConv2d._tune

    def counted(self, x):
        calls.append(tuple(x.shape[1:]))
        return real(self, x)

    monkeypatch.setattr(WinogradConv2d, "_tune", counted)
    a, b = WinogradConv2d(nn.Conv2d(32, 40, 3, padding=1)), WinogradConv2d(nn.Conv2d(32, 40, 3, padding=1))
    other = WinogradConv2d(nn.Conv2d(32, 48, 3, padding=1))  # different output channels: tuned apart
    x = torch.randn(2, 32, 13, 13)
    with torch.inference_mode():
        a(x), b(x), other(x)
    assert calls == [(32, 13, 13), (32, 13, 13)]
    assert a.chosen == b.chosen


def _chain_of_layers() -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(32, 40, 3, padding=1), nn.Conv2d(40, 48, 3, padding=0),
                        nn.Conv2d(48, 32, 3, padding=1, bias=False))
    assert replace_convs(net) == 3
    return net.eval()


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("size", [(16, 20), (15, 17)])  # whole tiles (no final crop) and cropped ones
def test_layers_sharing_one_workspace_match_fresh_scratch_and_return_their_own_output(m, size):
    net = _chain_of_layers()
    workspaces = {id(layer.workspace) for layer in net}
    assert len(workspaces) == 1
    x = torch.randn(3, 32, *size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for layer in net:
            layer.force = m
        outs, h = [], x
        for layer in net:  # every layer overwrites the shared scratch; earlier outputs must survive it
            h = layer(h)
            outs.append(h)
        expected, h = [], x
        for layer in net:
            h = winograd_conv(h, transform_weight(layer.weight, m), layer.bias, m, layer.padding)
            expected.append(h)
        net(x)  # a second pass reuses the same scratch
    for got, want in zip(outs, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    buffers = net[0].workspace._local.buffers
    assert len(buffers) == 2  # two alternating buffers, whatever the number of layers


def test_a_copied_model_gets_its_own_shared_workspace():
    import copy
    import pickle

    net = _chain_of_layers()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        ids = {id(layer.workspace) for layer in clone}
        assert len(ids) == 1 and ids.isdisjoint({id(net[0].workspace)})


def test_threads_running_one_model_do_not_share_scratch():
    from concurrent.futures import ThreadPoolExecutor

    net = _chain_of_layers()
    for layer in net:
        layer.force = 4
    inputs = [torch.randn(2, 32, 14 + i, 14 + i) for i in range(6)]
    with torch.inference_mode():
        expected = [net(x) for x in inputs]

    def run(x):
        with torch.inference_mode():
            return [net(x) for _ in range(5)]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, inputs))
    for outs, want in zip(results, expected):
        for got in outs:
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_workspace_serves_inference_mode_no_grad_and_plain_calls_alike():
    # scratch made under inference_mode must still take in-place writes outside it, and the reverse
    x = torch.randn(2, 32, 12, 12)
    for first, then in ((torch.inference_mode, torch.no_grad), (torch.no_grad, torch.inference_mode)):
        layer = WinogradConv2d(nn.Conv2d(32, 32, 3, padding=1))
        layer.force = 4
        with first():
            a = layer(x)
        with then():
            b = layer(x)
        c = layer(x)  # grad mode on, but nothing requires grad: still Winograd
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=0, atol=0)
