"""VirFace heads, generator, data (meta list, label remap, crop, merged batches) and checkpoint parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import facerec
from facerec.api import TensorDataset
from facerec.errors import DataError, WeightsError
from facerec_virface.checkpoints import load_parts, read_parts, save_parts
from facerec_virface.data import MergedBatches, VirFaceList, virface_crop
from facerec_virface.evaluation import CompatPairs, compat_best_threshold, compat_normalise
from facerec_virface.generator import VirFaceGenerator, kl_divergence
from facerec_virface.heads import VirClassHead, VirFaceArcFace, VirInstanceHead, arc_logits


def test_arc_logits_match_cos_theta_plus_m_and_fallback():
    torch.manual_seed(0)
    w = F.normalize(torch.randn(10, 16))
    x = torch.randn(64, 16)
    y = torch.randint(0, 10, (64,))
    out = arc_logits(x, w, y, 32.0, 0.5)
    cos = F.normalize(x) @ w.T
    ct = cos.gather(1, y[:, None]).squeeze(1)
    theta = ct.clamp(-1, 1).acos()
    want = torch.where(theta + 0.5 < torch.pi, torch.cos(theta + 0.5), ct - np.sin(np.pi - 0.5) * 0.5)
    assert torch.allclose(out.gather(1, y[:, None]).squeeze(1) / 32, want, atol=1e-5)
    other = torch.ones_like(out, dtype=torch.bool).scatter(1, y[:, None], False)
    assert torch.allclose(out[other] / 32, cos[other])


def test_virclass_gradient_reaches_unlabelled_and_virinstance_detaches_it():
    torch.manual_seed(0)
    head = VirInstanceHead(embedding_size=8, num_classes=5).eval()
    x = torch.randn(4, 8)
    u = torch.randn(3, 8, requires_grad=True)
    g = torch.randn(6, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    out = head(x, y, unlabeled=u)
    assert out.logits.shape == (4, 8)
    out.loss.backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    u.grad = None
    out = head(x, y, unlabeled=u, generated=g)
    gl, gt = out.extras["instance_logits"], out.extras["instance_targets"]
    assert gt.tolist() == [5, 6, 7, 5, 6, 7]
    gl.sum().backward()
    assert u.grad is None and g.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
    # labels -1 in the batch are the unlabelled rows; the plain head ignores them
    mixed = torch.cat([x, u.detach()])
    labels = torch.cat([y, torch.full((3,), -1)])
    assert torch.allclose(VirClassHead.forward(head, mixed, labels).logits, head(x, y, unlabeled=u).logits)
    assert VirFaceArcFace.forward(head, mixed, labels).logits.shape == (4, 5)
    with pytest.raises(ValueError, match="multiple"):
        head.instance_logits(torch.randn(4, 8), u)


def test_generator_augment_is_sample_major_and_kl_is_a_mean():
    gen = VirFaceGenerator(embedding_size=16)
    x = F.normalize(torch.randn(3, 16))
    a = gen.augment(x, 4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (12, 16) and torch.allclose(a.norm(dim=1), torch.ones(12))
    # chunk i = the i-th draw for every row: with zero log-variance spread, the chunks differ only by noise
    mean, logvar = gen.encode(x)
    eps = torch.randn((4, 3, mean.shape[1]), generator=torch.Generator().manual_seed(1))
    want = F.normalize(gen.decode((mean + torch.exp(logvar / 2) * eps).reshape(-1, mean.shape[1])), dim=1)
    assert torch.allclose(a, want, atol=1e-6)
    m, lv = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(kl_divergence(m, lv), (-0.5 * (1 + lv - m**2 - lv.exp())).sum() / 35)


def test_generator_fit_and_sample():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 16))
    feats = F.normalize(centres.repeat_interleave(20, 0) + 0.1 * torch.randn(80, 16))
    ds = TensorDataset(torch.arange(4).repeat_interleave(20), features=feats)
    gen = facerec.create("generator", "virface", embedding_size=16)
    before = gen.losses(feats, centres.repeat_interleave(20, 0))[0].item()
    out = gen.fit(ds, steps=150, batch_size=32, lr=0.05)
    after = gen.losses(feats, centres.repeat_interleave(20, 0))[0].item()
    assert after < 0.5 * before and set(out) == {"mse", "kl"}
    data = gen.as_dataset(3, 4, seed=0)
    assert data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data[0]["feature"].shape == (16,)


def _faces(tmp_path, n: int, w: int = 180, h: int = 220):
    rng = np.random.default_rng(0)
    for i in range(n):
        p = tmp_path / "img" / f"id_{i}" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)


def test_meta_list_remaps_ms1m_labels_and_unlabelled(tmp_path):
    _faces(tmp_path, 4)
    (tmp_path / "labeled_meta.txt").write_text("id_0/0.jpg 85707\nid_1/1.jpg 123\nid_2/2.jpg 10760.0\nid_3/3.jpg 123\n")
    ds = VirFaceList(tmp_path / "labeled_meta.txt", root=tmp_path / "img", image_size=112)
    assert ds.labels.tolist() == [2, 0, 1, 0] and ds.num_classes == 3
    assert ds.label_map == {123: 0, 10760: 1, 85707: 2}
    (tmp_path / "unlabeled_meta.txt").write_text("id_0/0.jpg 0\nid_1/1.jpg 0\n")
    un = VirFaceList(tmp_path / "unlabeled_meta.txt", root=tmp_path / "img", unlabeled=True, crop=True)
    assert un.labels.tolist() == [-1, -1] and un.num_classes == 0
    assert un[0]["image"].shape == (3, 112, 112)
    (tmp_path / "nolabel.txt").write_text("id_0/0.jpg\n")
    with pytest.raises(DataError, match="no label"):
        VirFaceList(tmp_path / "nolabel.txt", root=tmp_path / "img")


def test_crop_box_of_180x220_alignment():
    img = torch.arange(220 * 180).reshape(1, 220, 180)
    c = virface_crop(img)
    assert c.shape == (1, 150, 150)
    assert int(c[0, 0, 0]) == 55 * 180 + 15 and int(c[0, -1, -1]) == 204 * 180 + 164


def test_merged_batches_compose_and_restart():
    lab = TensorDataset(torch.arange(10), features=torch.arange(10.0)[:, None].expand(10, 3))
    lab.key = "image"  # the merge only cares about the "image" entry
    unl = TensorDataset(torch.full((4,), -1), images=torch.full((4, 3), 100.0) + torch.arange(4.0)[:, None])
    mb = MergedBatches(lab, unl, 4, 3, seed=0)
    assert mb.epoch_batches() == 3  # max(ceil(10/4), ceil(4/3))
    b = mb(0)
    assert b["label"][:4].ge(0).all() and b["label"][4:].eq(-1).all() and len(b["label"]) == 7
    seen = torch.cat([mb(i)["image"][4:, 0] for i in range(4)])  # 12 unlabelled draws of 4 samples
    assert sorted(seen[:4].tolist()) == [100.0, 101.0, 102.0, 103.0]  # a permutation, then it restarts
    assert torch.equal(mb(2)["image"], MergedBatches(lab, unl, 4, 3, seed=0)(2)["image"])  # exact resume


def test_checkpoint_parts_strict_with_and_without_module_prefix(tmp_path):
    b = facerec.create("backbone", "virface-resnet18", width=8, image_size=32, embedding_size=16)
    h = facerec.create("head", "virclass", embedding_size=16, num_classes=5)
    g = facerec.create("generator", "virface", embedding_size=16)
    ckpt = {
        "epoch": 1,
        "backbone": {"module." + k: v for k, v in b.state_dict().items()},
        "head": h.state_dict(),
        "generator": {"module." + k: v for k, v in g.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "_epoch_0.pytorch")
    b2 = facerec.create("backbone", "virface-resnet18", width=8, image_size=32, embedding_size=16)
    g2 = facerec.create("generator", "virface", embedding_size=16)
    facerec.load_weights(b2, tmp_path / "_epoch_0.pytorch")
    facerec.load_weights(g2, tmp_path / "_epoch_0.pytorch")
    assert all(torch.equal(v, b2.state_dict()[k]) for k, v in b.state_dict().items())
    assert torch.equal(g2.de2.weight, g.de2.weight)
    # a pretrain checkpoint has no generator: clear error
    del ckpt["generator"]
    torch.save(ckpt, tmp_path / "pre.pytorch")
    with pytest.raises(WeightsError, match="no 'generator' entry"):
        facerec.load_weights(g2, tmp_path / "pre.pytorch")
    # a different architecture does not load silently (the original loaded the key intersection)
    other = facerec.create("backbone", "virface-resnet34", width=8, image_size=32, embedding_size=16)
    with pytest.raises(WeightsError, match="missing"):
        facerec.load_weights(other, tmp_path / "pre.pytorch")
    # stage files round-trip
    save_parts(tmp_path / "s.safetensors", backbone=b, head=h, generator=g, stage="virface")
    assert set(read_parts(tmp_path / "s.safetensors")) == {"backbone", "head", "generator"}
    h2 = facerec.create("head", "virclass", embedding_size=16, num_classes=5)
    assert load_parts(tmp_path / "s.safetensors", backbone=b2, head=h2, generator=g2) == {
        "backbone",
        "head",
        "generator",
    }
    assert torch.equal(h2.weight, h.weight)


def test_convert_command(tmp_path, run_facerun):
    b = facerec.create("backbone", "virface-resnet18", embedding_size=512)
    h = facerec.create("head", "virface-arcface", embedding_size=512, num_classes=7)
    torch.save(
        {"epoch": 3, "backbone": {"module." + k: v for k, v in b.state_dict().items()}, "head": h.state_dict()},
        tmp_path / "_epoch_2.pytorch",
    )
    proc = run_facerun(
        "virface", "convert", str(tmp_path / "_epoch_2.pytorch"), "--arch", "resnet18", "--out", str(tmp_path / "out")
    )
    assert "backbone, head (7 classes)" in proc.stdout
    b2 = facerec.create("backbone", "virface-resnet18")
    facerec.load_weights(b2, tmp_path / "out" / "backbone.safetensors")
    assert torch.equal(b2.feature.weight, b.feature.weight)
    bad = run_facerun(
        "virface",
        "convert",
        str(tmp_path / "_epoch_2.pytorch"),
        "--arch",
        "resnet50",
        "--out",
        str(tmp_path / "o2"),
        check=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "missing" in bad.stderr


def test_compat_normalise_is_per_batch_dim0():
    x = torch.randn(10, 4)
    y = compat_normalise(x, 4)
    assert torch.allclose(y[:4].norm(dim=0), torch.ones(4)) and torch.allclose(y[8:].norm(dim=0), torch.ones(4))


def test_compat_pairs_wraps_a_pairs_protocol(tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    for p in range(6):
        for name in (f"A{p}", f"B{p}"):
            d = tmp_path / name
            d.mkdir()
            for k in (1, 2):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{name}_{k:04d}.jpg")
        lines += [f"A{p} 1 2", f"A{p} 1 B{p} 1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    proto = facerec.create("protocol", "pairs", data=str(tmp_path / "pairs.txt"), n_folds=2, image_size=32)
    model = facerec.create("backbone", "small-cnn", embedding_size=8, width=4, image_size=32).eval()
    res = CompatPairs(proto).evaluate(model)
    assert "accuracy" in res.metrics and "compat_accuracy" in res.metrics
    from facerec.inference import embed_tensor
    from facerec.protocols.common import load_image

    keys = proto.items()
    emb = F.normalize(embed_tensor(model, torch.stack([load_image(tmp_path / k, 32) for k in keys])), dim=1)
    idx = {k: i for i, k in enumerate(keys)}
    s = (emb[[idx[k] for k in proto.pairs.left]] * emb[[idx[k] for k in proto.pairs.right]]).sum(1)
    want = compat_best_threshold(s.double().numpy(), proto.pairs.same)
    assert res.metrics["compat_accuracy"] == pytest.approx(want.accuracy)
