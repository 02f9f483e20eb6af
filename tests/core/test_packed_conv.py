"""Pre-packed convolutions with fused ReLU / residual add (CPU inference path): exact against the
plain ops, the graph rewrite fuses only what is safe, fallbacks for autograd and other dtypes."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerec.api import Backbone, InputSpec
from facerec.inference import optimize_for_inference
from facerec.packed_conv import PackedConv2d, fuse_graph, pack_convs, packable
from facerec.winograd import WinogradConv2d, force_algorithm, replace_convs


def _conv(cin, cout, k, **kw) -> nn.Conv2d:
    torch.manual_seed(cin * 100 + cout + k)
    return nn.Conv2d(cin, cout, k, **kw).eval()


GEOMETRIES = [dict(cin=16, cout=32, k=3, stride=1, padding=1), dict(cin=16, cout=32, k=1, stride=2, padding=0),
              dict(cin=3, cout=24, k=5, stride=2, padding=2, bias=False),
              dict(cin=16, cout=16, k=3, stride=1, padding=2, dilation=2, groups=4)]


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: f"{g['cin']}-{g['cout']}-k{g['k']}-s{g['stride']}")
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("add,relu", [(False, False), (False, True), (True, False), (True, True)])
def test_packed_conv_equals_conv_then_add_then_relu(geo, channels_last, add, relu):
    geo = dict(geo)
    conv = _conv(geo.pop("cin"), geo.pop("cout"), geo.pop("k"), **geo)
    layer = PackedConv2d(conv, add=add, relu=relu)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch in (4, 3, 4):  # a second shape packs again; the first is then reused
        x = torch.randn(batch, conv.in_channels, 17, 15).contiguous(memory_format=fmt)
        with torch.inference_mode():
            ref = conv(x)
            residual = torch.randn_like(ref) if add else None
            if add:
                ref = ref + residual
            if relu:
                ref = F.relu(ref)
            got = layer(x, residual) if add else layer(x)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        if channels_last:  # the fast path's layout is kept (oneDNN may pick channels-last for NCHW input)
            assert got.is_contiguous(memory_format=torch.channels_last)
    assert len(layer._packed) == 2
    assert set(layer.state_dict()) == set(conv.state_dict())


def test_residual_in_another_layout_or_broadcast_still_adds_correctly():
    conv = _conv(16, 32, 1)
    layer = PackedConv2d(conv, add=True, relu=True)
    x = torch.randn(2, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        nchw = torch.randn(2, 32, 9, 9)
        torch.testing.assert_close(layer(x, nchw), F.relu(conv(x) + nchw))
        per_channel = torch.randn(1, 32, 1, 1)  # broadcasting: the plain ops handle it
        torch.testing.assert_close(layer(x, per_channel), F.relu(conv(x) + per_channel))


def test_autograd_and_float64_use_the_plain_ops():
    conv = _conv(8, 8, 3, padding=1)
    layer = PackedConv2d(conv, relu=True)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not layer._packed  # nothing was packed for the autograd call
    x64 = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    conv64 = copy.deepcopy(conv).double()
    with torch.inference_mode():
        torch.testing.assert_close(PackedConv2d(conv64, relu=True)(x64), F.relu(conv64(x64)))


def test_copies_drop_the_packed_weights_and_still_work():
    layer = PackedConv2d(_conv(8, 16, 3, padding=1), relu=True)
    x = torch.randn(2, 8, 7, 7)
    with torch.inference_mode():
        before = layer(x)
        twin = copy.deepcopy(layer)
        assert layer._packed and not twin._packed
        torch.testing.assert_close(twin(x), before, rtol=0, atol=0)


def test_only_zero_padded_conv2d_is_packable():
    assert packable(nn.Conv2d(3, 8, 3, padding=1))
    assert not packable(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"))
    assert not packable(nn.Conv2d(3, 8, 3, padding="same"))
    assert not packable(nn.Conv1d(3, 8, 3))
    with pytest.raises(ValueError, match="not a zero-padded Conv2d"):
        PackedConv2d(nn.Conv2d(3, 8, 3, padding="same"))


class Block(nn.Module):
    """relu(conv2(relu(conv1(x))) + shortcut(x)); ``conv3``'s output is also returned (two users), and
    ``shared`` is called twice: neither may be fused."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = _conv(8, 8, 3, padding=1), _conv(8, 8, 3, padding=1)
        self.bn2 = nn.Identity()  # what a folded BatchNorm becomes
        self.shortcut = _conv(8, 8, 1)
        self.conv3, self.shared = _conv(8, 8, 1), _conv(8, 8, 1)

    def forward(self, x):
        y = F.relu(self.conv1(x), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)
        z = self.conv3(y)
        return F.relu(z) + z + torch.relu(self.shared(self.shared(y)))


def test_graph_rewrite_fuses_only_single_use_chains():
    block = Block()
    x = torch.randn(2, 8, 10, 10)
    with torch.inference_mode():
        ref = block(x)
    gm = torch.fx.symbolic_trace(copy.deepcopy(block))
    assert fuse_graph(gm) == 2
    assert isinstance(gm.conv1, PackedConv2d) and gm.conv1.relu and not gm.conv1.add
    assert isinstance(gm.conv2, PackedConv2d) and gm.conv2.relu and gm.conv2.add
    assert type(gm.conv3) is nn.Conv2d and type(gm.shared) is nn.Conv2d and type(gm.shortcut) is nn.Conv2d
    with torch.inference_mode():
        torch.testing.assert_close(gm(x), ref, rtol=1e-5, atol=1e-5)


class Net(Backbone):
    input_spec = InputSpec(size=16)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(8, 8)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.blocks(F.relu(self.stem(x))), 1).flatten(1))


def test_pack_convs_keeps_the_backbone_its_keys_and_its_outputs():
    net = Net().eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.inference_mode():
        ref = net.embed(x)
    packed = copy.deepcopy(net)
    assert pack_convs(packed) == 2 * 5 + 1  # the five convs of both blocks, and the top level's stem
    assert isinstance(packed, Net) and packed.input_spec is net.input_spec
    assert list(packed.state_dict()) == list(net.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(packed.embed(x), ref, rtol=1e-5, atol=1e-5)
    # the top level is not rewritten (its class and methods stay), so the stem's ReLU stays separate
    assert not packed.stem.relu
    fused = [m for m in packed.modules() if isinstance(m, PackedConv2d) and (m.relu or m.add)]
    assert len(fused) == 4


def test_optimize_for_inference_uses_packed_convolutions_on_cpu():
    net = Net().eval()
    fast = optimize_for_inference(net)
    assert any(isinstance(m, PackedConv2d) for m in fast.modules())
    plain = optimize_for_inference(net, packed=False)
    assert not any(isinstance(m, PackedConv2d) for m in plain.modules())
    x = torch.rand(4, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fast.embed(x), net.embed(x), rtol=1e-4, atol=1e-5)


class WideBlock(nn.Module):
    """relu(conv2(relu(conv1(x))) + x) with 3x3 convs wide enough for Winograd."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = _conv(32, 32, 3, padding=1), _conv(32, 32, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


@pytest.mark.parametrize("m", [0, 2, 4])
def test_winograd_layers_take_the_relu_and_residual_too(m):
    block = WideBlock().eval()
    x = torch.randn(2, 32, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = block(x)
    fast = nn.Sequential(copy.deepcopy(block))
    assert replace_convs(fast) == 2
    assert pack_convs(fast) == 2
    layers = [fast[0].conv1, fast[0].conv2]
    assert all(isinstance(c, WinogradConv2d) for c in layers)
    assert (layers[0].add, layers[0].relu, layers[1].add, layers[1].relu) == (False, True, True, True)
    force_algorithm(fast, m)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=5e-5 if m == 4 else 1e-5)
    assert bool(layers[0]._packed) == (m == 0)  # the direct kernel runs with packed weights
    with pytest.raises(TypeError, match="needs the residual"):
        layers[1](x)
