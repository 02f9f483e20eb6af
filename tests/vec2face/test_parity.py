"""Parity with the original Vec2Face / SOTA-FR / 6DRepNet code through the released checkpoint layouts."""

from __future__ import annotations

import argparse
import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from facerec.nn import IResNet50SE, IResNet100
from facerec.testing import load_fixture
from facerec_vec2face.discriminator import Discriminator
from facerec_vec2face.generator import Vec2Face
from facerec_vec2face.pixel_decoder import PixelDecoder
from facerec_vec2face.sixdrepnet import SixDRepNet, euler_degrees

_spec = importlib.util.spec_from_file_location("v2f_helpers", Path(__file__).with_name("helpers.py"))
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


@pytest.fixture(autouse=True)
def _strict():
    helpers.strict_float()


def test_parity_vec2face_generator(parity_dir, tmp_path):
    fx = load_fixture("vec2face.generator", parity_dir)
    # A training checkpoint container (the released file holds at least 'model_vec2face').
    path = tmp_path / "vec2face_generator.pth"
    torch.save(
        {
            "model_vec2face": fx.state_dict(),
            "model_disc": {},
            "model_ema": None,
            "epoch": 3,
            "args": argparse.Namespace(model="vec2face_vit_base_patch16"),
        },
        path,
    )
    with torch.device("meta"):  # skip the 174M-parameter random init: every tensor is loaded below
        empty = Vec2Face(config="base")
    model = helpers.load_original(empty.to_empty(device="cpu"), path).eval()
    inp = fx.inputs()
    with torch.no_grad():
        out = model(inp["rep"], rate=0.3, noise=inp["noise"])
    fx.check("gt_indices", out.gt_tokens)
    fx.check("logits", out.logits)
    fx.check("image", out.image)
    fx.check("token_all_mask", out.token_all_mask)
    with torch.no_grad():
        out64 = model.double()(inp["rep"].double(), rate=0.3, noise=inp["noise"].double())
    fx.check("image_f64", out64.image)


def test_parity_vec2face_im_decoder(parity_dir, tmp_path):
    fx = load_fixture("vec2face.im_decoder", parity_dir)
    dec = PixelDecoder().eval()
    dec.load_state_dict(fx.state_dict(), strict=True)  # never saved alone; the generator test covers the file path
    z = fx.inputs()["z"]
    with torch.no_grad():
        fx.check("image", dec(z))
        fx.check("image_f64", dec.double()(z.double()))


def test_parity_vec2face_discriminator(parity_dir, tmp_path):
    fx = load_fixture("vec2face.discriminator", parity_dir)
    path = tmp_path / "checkpoint-last.pth"
    torch.save({"model_vec2face": {}, "model_disc": fx.state_dict(), "epoch": 1, "args": argparse.Namespace()}, path)
    disc = helpers.load_original(Discriminator(), path).eval()
    with torch.no_grad():
        fx.check("logits", disc(fx.inputs()["x"]))


def test_parity_vec2face_iresnet100(parity_dir, tmp_path):
    fx = load_fixture("vec2face.iresnet100", parity_dir)
    path = tmp_path / "arcface-r100-glint360k.pth"
    torch.save(fx.state_dict(), path)  # plain state dict, as released
    model = helpers.load_original(IResNet100(), path).eval()
    with torch.no_grad():
        fx.check("embedding", model(fx.inputs()["x"]))


def test_parity_sotafr_iresnet50_se(parity_dir, tmp_path):
    fx = load_fixture("sotafr.iresnet50_se", parity_dir)
    path = tmp_path / "hsface10k.pth"
    torch.save({"module." + k: v for k, v in fx.state_dict().items()}, path)  # DDP-prefixed variant
    model = helpers.load_original(IResNet50SE(), path).eval()
    with torch.no_grad():
        fx.check("embedding", model(fx.inputs()["x"]))


def test_parity_vec2face_sixdrepnet(parity_dir, tmp_path):
    fx = load_fixture("vec2face.sixdrepnet", parity_dir)
    path = tmp_path / "6DRepNet_300W_LP_AFLW2000.pth"
    torch.save(fx.state_dict(), path)
    model = helpers.load_original(SixDRepNet(), path).eval()
    x = fx.inputs()["x_bgr01"]
    for suffix, m, inp in (("", model, x), ("_f64", copy.deepcopy(model).double(), x.double())):
        with torch.no_grad():
            p = m.ortho6d(inp)
            r = m(inp)
        eul = euler_degrees(r)
        fx.check("ortho6d" + suffix, p)
        fx.check("rotation_matrix" + suffix, r)
        fx.check("euler_deg" + suffix, eul)
        fx.check("yaw_clipped_deg" + suffix, eul[:, 1].clip(-90, 90))
