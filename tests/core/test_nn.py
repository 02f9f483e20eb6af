"""facerec.nn: the shared blocks, and IResNet as a core backbone (insightface key names, trained by core alone)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import facerec
from facerec.data.writers import write_dataset
from facerec.nn import (
    IRESNET_LAYERS,
    BasicBlock,
    Bottleneck,
    IBasicBlock,
    IResNet18,
    IResNet50,
    IResNet50SE,
    IResNet100,
    IResNet200,
    SqueezeExcite,
    iresnet_head,
    projection,
)
from facerec.testing import load_fixture
from facerec.weights import load_weights


@pytest.mark.parametrize(
    ("fixture", "cls", "params"),
    [
        ("vec2face.iresnet100", IResNet100, 65_156_160),  # the counts the original code gives (specs, 2.6)
        ("sotafr.iresnet50_se", IResNet50SE, 43_634_368),
    ],
)
def test_iresnet_state_dict_is_insightface_keys_in_order(parity_dir, fixture, cls, params):
    want = [(e["key"], tuple(e["shape"])) for e in load_fixture(fixture, parity_dir).spec["state_dict"]]
    with torch.device("meta"):
        model = cls()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == want
    assert sum(p.numel() for p in model.parameters()) == params


def test_parity_sotafr_iresnet50_se_through_core(parity_dir, tmp_path):
    """Stem, IBasicBlock, SE gate and head against the original's outputs, loaded the released way
    (a ``module.``-prefixed .pth). tests/vec2face/test_parity.py runs this fixture and the R100 one too."""
    torch.backends.cudnn.allow_tf32 = False
    fx = load_fixture("sotafr.iresnet50_se", parity_dir)
    path = tmp_path / "hsface10k.pth"
    torch.save({"module." + k: v for k, v in fx.state_dict().items()}, path)
    model = IResNet50SE()
    load_weights(model, path)
    with torch.no_grad():
        fx.check("embedding", model.eval()(fx.inputs()["x"]))


def test_iresnet200_has_its_real_depth():
    assert IRESNET_LAYERS[200] == (6, 26, 60, 6) and IRESNET_LAYERS[100] == (3, 13, 30, 3)
    assert len(IResNet200(image_size=32, width=4).layer3) == 60
    small = IResNet18(image_size=32, width=8).eval()
    assert small.embed(torch.rand(2, 3, 48, 48)).shape == (2, 512)  # embed resizes to the input spec


def test_iresnet_rejects_a_size_four_stride_two_stages_cannot_divide():
    with pytest.raises(ValueError, match="multiple of 16"):
        IResNet50(image_size=40, width=8)


def test_ibasicblock_order_and_se_on_the_shortcut():
    torch.manual_seed(0)
    block = IBasicBlock(8, 16, stride=2, downsample=projection(8, 16, 2), se=True).eval()
    for bn in (block.bn1, block.bn2, block.bn3, block.downsample[1]):  # non-trivial BN statistics
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 10, 10)

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    branch = bn(block.bn3, block.conv2(block.prelu(bn(block.bn2, block.conv1(bn(block.bn1, x))))))
    shortcut = block.downsample(x)
    gate = torch.sigmoid(block.attn.fc2(F.relu(block.attn.fc1(shortcut.mean((2, 3), keepdim=True)))))
    with torch.no_grad():
        got = block(x)
        assert torch.allclose(got, branch + shortcut * gate, atol=1e-5)
        assert not torch.allclose(got, branch * gate + shortcut, atol=1e-3)  # the gate is not on the branch
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)  # stride on the second conv
    assert got.shape == (2, 16, 5, 5)


def test_squeeze_excite_keys_and_narrow_channels():
    assert set(SqueezeExcite(64).state_dict()) == {"fc1.weight", "fc2.weight"}  # SOTA-FR: no biases
    assert set(SqueezeExcite(64, bias=True).state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    narrow = SqueezeExcite(8)  # 8 // 16 = 0 hidden channels would not build
    assert narrow.fc1.out_channels == 1
    x = torch.randn(2, 8, 4, 4)
    gate = narrow(x) / x
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)  # one gate per channel
    assert bool(((gate > 0) & (gate < 1)).all())


def test_iresnet_head_features_weight_is_fixed_at_one():
    bn, drop, fc, features = iresnet_head(32, 2, 16, 0.4)
    assert fc.in_features == 32 * 2 * 2 and drop.p == 0.4 and drop.inplace
    assert not features.weight.requires_grad and bool((features.weight == 1).all())
    model = IResNet50(width=8, image_size=32)
    assert "features.weight" not in {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("cin", "cout", "stride", "projects"), [(8, 8, 1, False), (8, 16, 1, True), (8, 8, 2, True)])
def test_basic_block_projects_only_where_the_shape_changes(cin, cout, stride, projects):
    block = BasicBlock(cin, cout, stride).eval()
    assert (block.downsample is not None) == projects
    keys = {"conv1.weight", "bn1.weight", "conv2.weight", "bn2.weight"}
    assert keys <= set(block.state_dict()) and ("downsample.0.weight" in block.state_dict()) == projects
    assert block.conv1.stride == (stride, stride)  # torchvision: the stride sits on the first 3x3
    out = block(torch.randn(2, cin, 8, 8))
    assert out.shape == (2, cout, 8 // stride, 8 // stride) and bool((out >= 0).all())  # ends with ReLU


@pytest.mark.parametrize(("stride_on", "strided"), [("conv2", "conv2"), ("conv1", "conv1")])
def test_bottleneck_stride_placement(stride_on, strided):
    block = Bottleneck(16, 8, stride=2, stride_on=stride_on).eval()
    assert {name: getattr(block, name).stride for name in ("conv1", "conv2")}[strided] == (2, 2)
    assert block.conv3.out_channels == 32 and block.downsample[0].stride == (2, 2)
    assert block(torch.randn(1, 16, 8, 8)).shape == (1, 32, 4, 4)
    with pytest.raises(ValueError, match="stride_on"):
        Bottleneck(16, 8, stride_on="conv3")


def test_iresnet_is_a_core_backbone(run_facerun):
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    names = {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "iresnet50-se", "iresnet100-se"}
    assert {r["name"]: r["distribution"] for r in rows if r["name"] in names} == dict.fromkeys(names, "facerec-core")


def test_facerun_trains_arcface_iresnet_with_core_alone(tmp_path, run_facerun):
    """`facerun train --backbone iresnet50 --head arcface --dataset image-folder`: nothing but core needed."""
    synth = facerec.create("dataset", "synthetic", num_ids=6, per_id=4, image_size=32)
    write_dataset(synth, tmp_path / "faces", "folder")
    run = tmp_path / "run"
    run_facerun(
        "train",
        "--backbone",
        "iresnet50",
        "--head",
        "arcface",
        "--dataset",
        "image-folder",
        "--param",
        f"dataset.root={tmp_path / 'faces'}",
        "--param",
        "backbone.width=8",
        "--param",
        "backbone.image_size=32",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(run),
    )
    config = json.loads((run / "config.json").read_text())
    assert (config["backbone"], config["head"], config["dataset"]) == ("iresnet50", "arcface", "image-folder")
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r.get("kind") == "train"]
    assert steps and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    model = IResNet50(width=8, image_size=32)
    model.load_state_dict(load_file(run / "backbone.safetensors"), strict=True)  # insightface key names
