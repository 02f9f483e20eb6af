"""DVG (NeurIPS 2019) dual VAE: losses, training, same-noise paired sampling."""

from __future__ import annotations

import pytest
import torch

import facerec
from facerec_dvg.dvg_neurips import DVGNeurIPS
from facerec_dvg.lightcnn import LightCNN29

from .test_dvgface_generator import _paired_data


def _small() -> DVGNeurIPS:
    torch.manual_seed(0)
    gen = DVGNeurIPS(hdim=16, image_size=32, width=0.125)
    gen.set_face_model(LightCNN29(image_size=32, width=0.25))
    return gen


def test_losses_match_the_spec_formulas():
    gen = _small()
    g = torch.Generator().manual_seed(0)
    nir, vis = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    warm = gen.losses(nir, vis, warm=True, generator=torch.Generator().manual_seed(1))
    full = gen.losses(nir, vis, warm=False, generator=torch.Generator().manual_seed(1))
    rest = sum(full[k] for k in ("kl", "mmd", "ip", "pair"))
    torch.testing.assert_close(full["loss"], full["rec"] + rest)
    torch.testing.assert_close(warm["loss"], warm["rec"] + 0.01 * rest)
    # reconstruction: half the per-image sum of squares, averaged over the batch (order of 6*32*32/12)
    assert 50 < float(full["rec"].detach()) < 2000


def test_fit_and_sample_pairs_share_the_noise():
    gen = _small()
    log: list = []
    gen.fit(_paired_data(), steps=8, batch_size=4, seed=0, log=log)
    assert log[-1]["rec"] + log[-2]["rec"] < log[0]["rec"] + log[1]["rec"]
    batches = list(gen.sample(5, 2, seed=3, batch_size=4))  # per_id = images per identity: one pair
    labels = torch.cat([b.labels for b in batches])
    assert sorted(labels.tolist()) == sorted(list(range(5)) * 2)
    nir, vis = gen.sample_pairs(3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 16, generator=g)
    with torch.no_grad():
        ref = gen.decoder(torch.cat([noise, noise], dim=1))
    torch.testing.assert_close(torch.cat([nir, vis], dim=1), ref)
    with pytest.raises(ValueError, match="per_id=2"):
        next(gen.sample(2, 1))


def test_registered():
    assert facerec.describe("generator", "dvg-neurips")["summary"].startswith("DVG (NeurIPS 2019)")
