"""DVG-Face generator: batched step == original step, training reduces the loss, sampling, identity sampler."""

from __future__ import annotations

import pytest
import torch
from facerec.api import TensorDataset
from facerec.errors import DataError

from facerec_dvg.dvgface import DVGFace
from facerec_dvg.lightcnn import LightCNN29
from facerec_dvg.losses import derangement
from facerec_dvg.pairs import PairSampler


def _small() -> DVGFace:
    torch.manual_seed(0)
    gen = DVGFace(image_size=32, width=0.25)
    gen.set_face_model(LightCNN29(image_size=32, width=0.25))
    return gen


def _paired_data(n_ids: int = 6, per: int = 3, size: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(n_ids, 3, size, size, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(2 * per)
    modality = torch.tensor([1] * per + [0] * per).repeat(n_ids)
    images = base[labels] * 0.8 + 0.2 * torch.rand(len(labels), 3, size, size, generator=g)
    images[modality == 1] = images[modality == 1].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    return TensorDataset(labels, images=images, modality=modality)


def test_batched_step_equals_original_step():
    gen = _small()
    b = 4
    g = torch.Generator().manual_seed(2)
    nir, vis = torch.rand(b, 3, 32, 32, generator=g), torch.rand(b, 3, 32, 32, generator=g)
    idx, noise = derangement(b, g), torch.randn(b, 256, generator=g)
    fast = gen.train_step(nir, vis, idx, noise)
    fast.loss.backward()
    grads = {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None}
    gen.zero_grad()
    ref = gen.original_step(nir, vis, idx, noise)
    ref.loss.backward()
    for name in ("loss", "ort", "pix", "ip"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    for key, img in ref.images.items():
        torch.testing.assert_close(fast.images[key], img, rtol=1e-5, atol=1e-6)
    assert grads and all(p.grad is not None for p in gen.decoder.parameters())
    for n, p in gen.named_parameters():
        if n in grads:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-3, atol=1e-5)


def test_derangement_has_no_fixed_point():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 8, 50):
        p = derangement(n, g)
        assert sorted(p.tolist()) == list(range(n)) and not bool((p == torch.arange(n)).any())


def test_pair_sampler_pairs_same_identity_across_modalities():
    data = _paired_data()
    labels = data.labels.clone()
    labels[-1] = 99  # a VIS-only identity must never be sampled
    s = PairSampler(labels, data.modality)
    nir, vis, lab = s.sample(200, torch.Generator().manual_seed(0))
    assert bool((data.modality[nir] == 1).all()) and bool((data.modality[vis] == 0).all())
    assert torch.equal(labels[nir], lab) and torch.equal(labels[vis], lab)
    assert 99 not in lab.tolist() and s.num_identities == 6
    with pytest.raises(DataError, match="both NIR and VIS"):
        PairSampler(labels, torch.zeros_like(labels))


def test_fit_lowers_loss_and_sample_yields_paired_images():
    gen = _small()
    data = _paired_data()
    log: list = []
    gen.fit(data, steps=20, batch_size=4, seed=0, log=log)
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < first, (first, last)
    assert int(gen.attributes_count) == 256 and float(gen.attributes_vis.norm(dim=1).min()) > 0.99
    batches = list(gen.sample(3, 4, seed=0, batch_size=8))  # 4 images per identity: 2 NIR/VIS pairs
    labels = torch.cat([b.labels for b in batches])
    modality = torch.cat([b.modality for b in batches])
    images = torch.cat([b.images for b in batches])
    assert images.shape == (12, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert int(modality.sum()) == 6
    with pytest.raises(ValueError, match="even"):
        next(gen.sample(2, 3))
    # deterministic per seed; a different seed gives different identities
    again = torch.cat([b.images for b in gen.sample(3, 4, seed=0, batch_size=8)])
    other = torch.cat([b.images for b in gen.sample(3, 4, seed=1, batch_size=8)])
    assert torch.equal(images, again) and not torch.allclose(images, other)
    # the generator's own state dict round-trips, attribute bank included
    fresh = DVGFace(image_size=32, width=0.25)
    fresh.load_state_dict(gen.state_dict())
    assert torch.equal(fresh.attributes_vis, gen.attributes_vis)


def test_identity_sampler_training_fits_feature_distribution():
    gen = DVGFace(image_size=32, width=0.25)
    g = torch.Generator().manual_seed(0)
    # features clustered around one direction: trained samples must move there
    centre = torch.nn.functional.normalize(torch.randn(256, generator=g), dim=0)
    feats = torch.nn.functional.normalize(centre + 0.3 * torch.randn(500, 256, generator=g) / 16, dim=1)
    with torch.no_grad():
        before = (gen.identity_sampler(torch.randn(200, 256, generator=g)) @ centre).mean()
    gen.fit_identity_sampler(feats, steps=100, batch_size=64, seed=0)
    with torch.no_grad():
        after = (gen.identity_sampler(torch.randn(200, 256, generator=g)) @ centre).mean()
    assert float(after) > 0.8 > float(before)
