"""Every registered backbone exports to ONNX with a dynamic batch axis and ONNX Runtime reproduces
PyTorch within 1e-4 at batch 1, 7 and 32 (the preprocessing folded in, so the check covers it too).

Each backbone runs at its smallest sensible parameters (width 8, 32 px where it takes a size, short
DCR stages) with BatchNorm statistics calibrated on random batches, so that its outputs vary with
the input by far more than the tolerance (a random-init network in eval mode is nearly constant).
"""

from __future__ import annotations

import pytest
import torch

import facerec
from facerec import registry

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the test extra (requirements/test.txt)")
pytest.importorskip("onnxruntime", reason="ONNX export tests need the test extra (requirements/test.txt)")

from facerec.onnx.export import TOLERANCE, export_onnx  # noqa: E402

BACKBONES = sorted(c.name for c in facerec.components("backbone"))

#: deep variants whose smaller siblings cover the same blocks and export path (seconds saved in CI)
SKIPPED = {
    "iresnet100": "same IBasicBlock/PReLU graph as iresnet50 (covered), twice as deep",
    "iresnet100-se": "same SE IBasicBlock graph as iresnet50-se (covered), twice as deep",
    "iresnet200": "same IBasicBlock/PReLU graph as iresnet50 (covered), four times as deep",
    "virface-resnet101": "same Bottleneck graph as virface-resnet50 (covered), twice as deep",
    "virface-resnet152": "same Bottleneck graph as virface-resnet50 (covered), three times as deep",
    "vggface2-senet50": "full-size 224 px SE-ResNet-50 (no size parameter; ~25 s per check on 2 loaded cores); "
    "vggface2-resnet50 covers the family's BGR / resize-crop / Caffe-block export",
}
#: backbones that cannot be exported, with the reason (none at present)
CANNOT_EXPORT: dict[str, str] = {}


def small_params(name: str) -> dict:
    params = registry.parameters(registry.load("backbone", name))
    out: dict = {}
    if "width" in params:
        out["width"] = 8 if isinstance(params["width"].default, int) else 0.25
    if "embedding_size" in params:
        out["embedding_size"] = 64
    if "num_classes" in params:
        out["num_classes"] = 10
    if "layers" in params:
        out["layers"] = (1, 1, 1, 1)
    if "image_size" in params:
        out["image_size"] = 32
    return out


def _unit_scale_layers(net: torch.nn.Module, images: torch.Tensor) -> None:
    """Without BatchNorm: rescale every conv/linear layer, in forward order, so its output has unit
    std on ``images`` (data-dependent init; default init shrinks activations layer after layer)."""

    def hook(module, _inputs, output):
        std = output.std().clamp(min=1e-12)
        module.weight.div_(std)
        if module.bias is not None:
            module.bias.div_(std)
        return output / std

    handles = [
        m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    try:
        with torch.no_grad():
            net.embed(images)
    finally:
        for h in handles:
            h.remove()


def calibrated(name: str) -> torch.nn.Module:
    """The backbone in eval mode with BatchNorm running statistics from two random batches (or, with
    no BatchNorm, unit-scale layers), so that its outputs depend on the input at a useful scale."""
    torch.manual_seed(0)
    net = facerec.create("backbone", name, **small_params(name))
    side = net.input_spec.canonical_size
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        _unit_scale_layers(net.eval(), torch.rand(8, 3, side, side))
        return net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net.embed(torch.rand(8, 3, side, side))
    return net.eval()


def _marks(name: str) -> list:
    if name in SKIPPED:
        return [pytest.mark.skip(reason=SKIPPED[name])]
    if name in CANNOT_EXPORT:
        return [pytest.mark.xfail(reason=CANNOT_EXPORT[name], strict=True)]
    return []


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in BACKBONES])
def test_backbone_exports_with_dynamic_batch_and_ort_matches(name, tmp_path):
    net = calibrated(name)
    side = net.input_spec.canonical_size
    with torch.no_grad():
        probe = net.embed(torch.rand(2, 3, side, side))
    spread = float((probe[0] - probe[1]).abs().max())
    assert spread > 100 * TOLERANCE  # the check below can tell a wrong graph from a right one
    result = export_onnx(net, tmp_path / f"{name}.onnx", name=name, params=small_params(name), with_preprocessing=True)
    assert set(result.max_abs_diff) == {1, 7, 32}
    assert max(result.max_abs_diff.values()) <= TOLERANCE * max(1.0, result.output_scale)
    model = onnx.load(str(tmp_path / f"{name}.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # a named, dynamic batch axis
    assert [d.dim_value for d in dims[1:]] == [3, side, side]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["facerec.backbone"] == name and meta["facerec.preprocessing"] == "folded"
    assert int(meta["facerec.embedding_size"]) == probe.shape[1]
