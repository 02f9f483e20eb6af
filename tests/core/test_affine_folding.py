"""The fast path folds any per-channel affine layer that follows a convolution, however a plugin wrote it
(issue 21: dlib's affine layers written as parameters were not folded, so the speed-up shrank)."""

from __future__ import annotations

import torch
from torch import nn

from facerec.api import Backbone, InputSpec
from facerec.inference import channel_affine, fold_batchnorm, optimize_for_inference


class ParamAffine(nn.Module):
    """x * gamma + beta per channel, as dlib's affine_ layer (CONV_MODE) does."""

    def __init__(self, c: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.beta = nn.Parameter(torch.rand(c) - 0.5)

    def forward(self, x):
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


class SpatialAffine(nn.Module):
    """dlib's FC_MODE affine: one gamma per element; not per channel, must not be folded."""

    def __init__(self, c: int, hw: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c, hw, hw) + 0.5)

    def forward(self, x):
        return x * self.gamma


class Net(Backbone):
    input_spec = InputSpec(size=12)
    embedding_size = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.aff1 = ParamAffine(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.aff2 = ParamAffine(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)  # not affine: stays
        self.conv4 = nn.Conv2d(8, 8, 3, stride=2)
        self.spatial = SpatialAffine(8, 5)  # not per channel: stays

    def forward(self, x):
        x = torch.relu(self.aff1(self.conv1(x)))
        x = self.aff2(self.conv2(x)) + x
        x = self.spatial(self.conv4(self.act(self.conv3(x))))
        return x.mean((2, 3))


def test_probe_recognises_per_channel_affines_only():
    a = ParamAffine(4)
    scale, shift = channel_affine(a, 4)
    torch.testing.assert_close(scale, a.gamma.detach().double())
    torch.testing.assert_close(shift, a.beta.detach().double())
    bn = nn.BatchNorm2d(4).eval()
    bn.running_mean.fill_(0.3)
    assert channel_affine(bn, 4) is not None
    assert channel_affine(nn.ReLU(), 4) is None
    assert channel_affine(SpatialAffine(4, 5), 4) is None
    assert channel_affine(nn.Conv2d(4, 4, 1), 4) is None  # mixes channels


def test_affine_layers_written_as_parameters_are_folded_and_output_is_unchanged():
    net = Net().eval()
    folded, n = fold_batchnorm(net)
    assert n == 2  # aff1 and aff2; the leaky ReLU and the spatial affine are not per-channel affines
    assert isinstance(folded.aff1, nn.Identity) and isinstance(folded.aff2, nn.Identity)
    assert isinstance(folded.spatial, SpatialAffine) and isinstance(folded.act, nn.LeakyReLU)
    assert folded.conv2.bias is not None  # the shift now lives in the conv's bias
    x = torch.rand(4, 3, 12, 12)
    with torch.inference_mode():
        ref = net.embed(x)
        torch.testing.assert_close(folded.embed(x), ref, atol=1e-5, rtol=1e-5)
        fast = optimize_for_inference(net)
        assert not any(isinstance(m, ParamAffine) for m in fast.modules())
        torch.testing.assert_close(fast.embed(x), ref, atol=1e-4, rtol=1e-4)
