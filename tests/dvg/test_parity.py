"""Parity with the original DVG-Face / DVG code: original-format checkpoints load through the plugin's
converters (the path the released weights take) and the outputs match the stored fixture outputs."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from facerec.testing import load_fixture

from facerec_dvg.dvg_nets import VAEDecoder, VAEEncoder
from facerec_dvg.dvgface_nets import Decoder, Encoder, IdentitySampler
from facerec_dvg.heads import LightCNNClassifier
from facerec_dvg.lightcnn import LightCNN29


@pytest.fixture(autouse=True)
def strict_float32():
    old = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.are_deterministic_algorithms_enabled(),
    )
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old[:2]
    torch.use_deterministic_algorithms(old[2])


def _load(model, checkpoint_path, device="cpu"):
    """The released-weights path: facerec.load_weights (safe read, plugin converter, strict load)."""
    import facerec

    facerec.load_weights(model, checkpoint_path)
    return model.eval().to(device)


def _save_original(fixture, tmp_path, name="model.pth.tar"):
    """The original container: torch.save({'epoch', 'state_dict'}) of a DataParallel model."""
    state = {"module." + k: v for k, v in fixture.state_dict().items()}
    path = tmp_path / name
    torch.save({"epoch": 5, "arch": "LightCNN-29v2", "state_dict": state, "prec1": 0.0}, path)
    return path


def test_parity_dvgface_lightcnn29v2(parity_dir, tmp_path, device):
    fx = load_fixture("dvgface.lightcnn29v2", parity_dir)
    path = _save_original(fx, tmp_path)
    with pytest.warns(UserWarning, match=r"fc2_\.weight \[16, 256\].*dropped"):
        backbone = _load(LightCNN29(), path, device)
    head = _load(LightCNNClassifier(embedding_size=256, num_classes=16), path, device)
    x = fx.inputs()["x"].to(device)
    with torch.no_grad():
        fc = backbone.features(x)
        fx.check("fc", fc)
        fx.check("embedding", F.normalize(fc, dim=1))
        fx.check("logits", head.logits(fc))
        normalized = LightCNN29(normalize=True)
        normalized.load_state_dict(backbone.state_dict())
        fx.check("embedding", normalized.to(device).eval()(x))


def test_parity_dvgface_encoder(parity_dir, tmp_path, device):
    fx = load_fixture("dvgface.encoder", parity_dir)
    enc = _load(Encoder(), _save_original(fx, tmp_path, "encoder_nir_epoch_5.pth.tar"), device)
    with torch.no_grad():
        z = enc(fx.inputs()["x"].to(device), "enc")
        fx.check("z", z)
        fx.check("style", enc(z, "style"))


def test_parity_dvgface_decoder(parity_dir, tmp_path, device):
    fx = load_fixture("dvgface.decoder", parity_dir)
    dec = _load(Decoder(), _save_original(fx, tmp_path, "decoder_epoch_5.pth.tar"), device)
    inp = {k: v.to(device) for k, v in fx.inputs().items()}
    h = torch.cat([inp["identity"], inp["z"]], dim=1)
    with torch.no_grad():
        fx.check("nir", dec(h, inp["style"], "nir"))
        fx.check("vis", dec(h, inp["style"], "vis"))
        # The batched path (per-sample modality, one call) gives the same images.
        both = dec(
            torch.cat([h, h]),
            torch.cat([inp["style"], inp["style"]]),
            torch.tensor([True, True, False, False], device=device),
        )
        fx.check("nir", both[:2])
        fx.check("vis", both[2:])


def test_parity_dvgface_identity_sampler(parity_dir, tmp_path, device):
    fx = load_fixture("dvgface.identity_sampler", parity_dir)
    sampler = _load(IdentitySampler(), _save_original(fx, tmp_path, "dec_epoch_45.pth.tar"), device)
    with torch.no_grad():
        fx.check("identity", sampler(fx.inputs()["noise"].to(device)))


def test_parity_dvg_encoder(parity_dir, tmp_path, device):
    fx = load_fixture("dvg.encoder", parity_dir)
    enc = _load(VAEEncoder(hdim=128), _save_original(fx, tmp_path), device)
    with torch.no_grad():
        mu, logvar = enc(fx.inputs()["x"].to(device))
    fx.check("mu", mu)
    fx.check("logvar", logvar)


def test_parity_dvg_decoder(parity_dir, tmp_path, device):
    fx = load_fixture("dvg.decoder", parity_dir)
    dec = _load(VAEDecoder(hdim=256), _save_original(fx, tmp_path), device)
    with torch.no_grad():
        fx.check("image", dec(fx.inputs()["z"].to(device)))


def test_lightcnn_wrong_checkpoint_lists_keys(parity_dir, tmp_path):
    from facerec.errors import WeightsError

    fx = load_fixture("dvgface.encoder", parity_dir)  # an encoder checkpoint is not a LightCNN
    path = _save_original(fx, tmp_path)
    with pytest.raises(WeightsError, match=r"missing (\d+ )?keys: conv1.filter.weight"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _load(LightCNN29(), path)
