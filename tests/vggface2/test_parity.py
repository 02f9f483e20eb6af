"""Parity with cydonia999/VGGFace2-pytorch: the fixture weights are written as a released-format .pkl
(latin-1 era pickle of numpy arrays, no num_batches_tracked) and loaded through facerec.load_weights."""

from __future__ import annotations

import pickle

import torch

import facerec
from facerec.testing import load_fixture


def _write_pkl(fixture, path) -> None:
    arrays = {k: v.numpy() for k, v in fixture.state_dict().items() if not k.endswith("num_batches_tracked")}
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=2)


def _parity(name: str, backbone: str, parity_dir, tmp_path) -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    fx = load_fixture(name, parity_dir)
    path = tmp_path / "weight.pkl"
    _write_pkl(fx, path)
    model = facerec.create("backbone", backbone)
    facerec.load_weights(model, path)
    model.eval()
    x = fx.inputs()["x"]
    with torch.no_grad():
        feature = model(x)
        logits = model.fc(feature)
    fx.check("feature", feature)
    fx.check("logits", logits)
    # the logits path of the model agrees with fc(feature)
    with torch.no_grad():
        assert torch.equal(model.logits(x), logits)


def test_parity_vggface2_resnet50(parity_dir, tmp_path):
    _parity("vggface2.resnet50", "vggface2-resnet50", parity_dir, tmp_path)


def test_parity_vggface2_senet50(parity_dir, tmp_path):
    _parity("vggface2.senet50", "vggface2-senet50", parity_dir, tmp_path)
