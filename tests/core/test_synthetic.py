"""Synthetic renderer, datasets, protocols and the sample-grid writer (issue 3): behaviour and contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import facerec
from facerec.data.grid import save_grid
from facerec.data.synthetic import degrade, draw_yaw, render
from facerec.errors import FacerecError, ParameterError

IDS = torch.tensor([0, 0, 1, 1, 7, 123456])
SAMPLES = torch.tensor([0, 1, 0, 1, 3, 2])


# ------------------------------------------------------------------------------------------ renderer


@pytest.mark.parametrize("size", [112, 120, 128, 144, 224, 32])
def test_render_shape_range_and_sizes(size):
    img = render(IDS[:2], SAMPLES[:2], size=size)
    assert img.shape == (2, 3, size, size) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert float(img.std()) > 0.05  # not blank


def test_render_is_deterministic_and_batch_independent():
    a = render(IDS, SAMPLES, seed=3, size=64)
    b = render(IDS.flip(0), SAMPLES.flip(0), seed=3, size=64).flip(0)
    single = torch.cat([render(IDS[i : i + 1], SAMPLES[i : i + 1], seed=3, size=64) for i in range(len(IDS))])
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, single, atol=1e-5)
    assert not torch.allclose(a, render(IDS, SAMPLES, seed=4, size=64), atol=1e-2)  # seed is a world


def test_identity_and_sample_change_the_image():
    img = render(torch.tensor([5, 5, 6]), torch.tensor([0, 1, 0]), size=64)
    assert (img[0] - img[1]).abs().mean() > 0.02  # same id, other sample: nuisance differs
    assert (img[0] - img[2]).abs().mean() > 0.02


def test_nir_is_grey_and_vis_is_colour():
    vis = render(IDS, SAMPLES, size=48, modality="VIS")
    nir = render(IDS, SAMPLES, size=48, modality="NIR")
    assert torch.equal(nir[:, 0], nir[:, 1]) and torch.equal(nir[:, 1], nir[:, 2])
    assert (vis[:, 0] - vis[:, 2]).abs().mean() > 0.02
    mixed = render(IDS, SAMPLES, size=48, modality=torch.tensor([0, 1, 0, 1, 0, 1]))
    assert torch.allclose(mixed[1::2], nir[1::2], atol=1e-5) and torch.allclose(mixed[::2], vis[::2], atol=1e-5)


def test_yaw_override_and_draw_yaw():
    ids, smp = torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    imgs = render(ids, smp, size=64, yaw=torch.tensor([-80.0, 0.0, 80.0]))
    # a head turned left or right is not the mirror-identical frontal image
    assert (imgs[0] - imgs[1]).abs().mean() > 0.01 and (imgs[2] - imgs[1]).abs().mean() > 0.01
    drawn = draw_yaw(torch.arange(2000), torch.zeros(2000, dtype=torch.long))
    assert float(drawn.abs().max()) <= 90.0 and float(drawn.abs().max()) > 60.0  # profiles occur
    assert float(drawn.abs().median()) < 20.0  # most views are near frontal
    assert torch.allclose(
        render(IDS[:2], SAMPLES[:2], size=32),
        render(IDS[:2], SAMPLES[:2], size=32, yaw=draw_yaw(IDS[:2], SAMPLES[:2])),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(identities=torch.tensor([0.5]), samples=torch.tensor([0])), "identities"),
        (dict(identities=torch.tensor([0, 1]), samples=torch.tensor([0])), "2 identities but 1 samples"),
        (dict(identities=torch.tensor([-1]), samples=torch.tensor([0])), ">= 0"),
        (dict(identities=[0], samples=[0], modality="IR"), "modality"),
        (dict(identities=[0], samples=[0], size=8), "size"),
        (dict(identities=[0], samples=[0], yaw=torch.tensor([1.0, 2.0])), "yaw"),
        (dict(identities=[0], samples=[0], max_yw=3), "nuisance"),
    ],
)
def test_render_rejects_bad_input(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        render(**kwargs)


def test_nuisance_knobs_make_images_easier():
    ids = torch.arange(40)
    smp = torch.ones(40, dtype=torch.long)
    calm = render(
        ids,
        smp,
        size=32,
        max_yaw=0.0,
        roll_std=0.0,
        translate=0.0,
        color_jitter=0.0,
        glasses_prob=0.0,
        hat_prob=0.0,
        mask_prob=0.0,
        blur_prob=0.0,
        noise_max=0.0,
        clutter=0.0,
    )
    wild = render(ids, smp, size=32)
    # with every nuisance off, two samples of one id are closer than with the default nuisance
    calm2 = render(
        ids,
        smp + 1,
        size=32,
        max_yaw=0.0,
        roll_std=0.0,
        translate=0.0,
        color_jitter=0.0,
        glasses_prob=0.0,
        hat_prob=0.0,
        mask_prob=0.0,
        blur_prob=0.0,
        noise_max=0.0,
        clutter=0.0,
    )
    wild2 = render(ids, smp + 1, size=32)
    assert (calm - calm2).abs().mean() < (wild - wild2).abs().mean()


def test_degrade_lowers_resolution_and_keeps_size():
    img = render(IDS[:4], SAMPLES[:4], size=112)
    lr = degrade(img, 8)
    assert lr.shape == img.shape and float(lr.min()) >= 0 and float(lr.max()) <= 1
    # an 8 px image has (almost) no detail above 8 px: re-degrading it changes little, unlike the original
    assert (degrade(lr, 8) - lr).abs().mean() < 0.25 * (lr - img).abs().mean()
    errs = [float((degrade(img, r) - img).abs().mean()) for r in (8, 12, 16, 20)]
    assert errs == sorted(errs, reverse=True)
    per_item = degrade(img, torch.tensor([8, 20, 8, 20]))
    assert torch.allclose(per_item[0], lr[0]) and torch.allclose(per_item[1], degrade(img[1:2], 20)[0])
    with pytest.raises(ParameterError, match="resolutions"):
        degrade(img, 500)
    with pytest.raises(ParameterError, match="4 images"):
        degrade(img, [8, 8])


# ------------------------------------------------------------------------------------------ datasets


def test_synthetic_dataset_items_labels_and_batch():
    ds = facerec.create("dataset", "synthetic", num_ids=5, per_id=3, image_size=48, seed=1)
    assert len(ds) == 15 and ds.num_classes == 5
    assert ds.labels.tolist() == [i // 3 for i in range(15)]
    b = ds.batch([0, 4, 14])
    assert b["image"].shape == (3, 3, 48, 48) and b["label"].tolist() == [0, 1, 4]
    assert torch.allclose(b["image"][1], ds[4]["image"], atol=1e-5)
    assert ds[4]["label"] == 1 and isinstance(ds[4]["label"], int)
    expected = render(torch.tensor([0, 1, 4]), torch.tensor([0, 1, 2]), seed=1, size=48)
    assert torch.allclose(b["image"], expected, atol=1e-5)
    with pytest.raises(IndexError):
        ds.batch([15])


@pytest.mark.parametrize("name", ["synthetic-pairs", "synthetic-pose-pairs", "synthetic-nir-vis", "synthetic-lowres"])
def test_dataset_ids_disjoint_from_protocol_ids(name):
    ds = facerec.create("dataset", "synthetic")
    train_ids = set((ds.labels + ds.id_offset).unique().tolist())
    proto = facerec.create("protocol", name)
    assert not train_ids & set(proto.plan["identity"].unique().tolist())


def test_nir_vis_dataset_pairs_modalities():
    ds = facerec.create("dataset", "synthetic-nir-vis", num_ids=3, vis_per_id=2, nir_per_id=3, image_size=32)
    assert len(ds) == 15
    b = ds.batch(range(15))
    assert b["modality"].tolist() == [0, 0, 1, 1, 1] * 3 == ds.modality.tolist()
    nir = b["image"][b["modality"] == 1]
    assert torch.equal(nir[:, 0], nir[:, 2])
    assert set(b["label"][b["modality"] == 1].tolist()) == set(b["label"][b["modality"] == 0].tolist())


def test_lowres_dataset_couples_hr_and_lr():
    ds = facerec.create("dataset", "synthetic-lowres", num_ids=2, per_id=4, image_size=64, resolutions=[8, 16])
    b = ds.batch(range(8))
    assert b["resolution"].tolist() == [8, 16, 8, 16] * 2
    assert torch.allclose(b["image_lr"], degrade(b["image"], b["resolution"]), atol=1e-6)
    with pytest.raises(ParameterError, match="resolutions"):
        facerec.create("dataset", "synthetic-lowres", image_size=64, resolutions=[128])


def test_unlabeled_dataset_withholds_labels():
    ds = facerec.create("dataset", "synthetic-unlabeled", num_ids=4, per_id=2, image_size=32)
    assert ds.num_classes == 0 and ds.labels.tolist() == [-1] * 8
    b = ds.batch(range(8))
    assert b["label"].tolist() == [-1] * 8
    assert b["identity"].tolist() == [ds.id_offset + i // 2 for i in range(8)]
    with pytest.raises(ParameterError, match="per_id"):
        facerec.create("dataset", "synthetic-unlabeled", per_id=5)


def test_dataset_parameter_errors_are_facerec_errors():
    with pytest.raises(FacerecError, match="num_ids"):
        facerec.create("dataset", "synthetic", num_ids=0)


# ------------------------------------------------------------------------------------------ protocols


def _oracle(protocol) -> dict[str, torch.Tensor]:
    """Perfect features: one-hot identity read from the plan (keys name the items)."""
    ids = protocol.plan["identity"]
    uniq, inv = ids.unique(return_inverse=True)
    return dict(zip(protocol.keys, torch.eye(len(uniq))[inv]))


def test_pairs_protocol_layout_and_scoring():
    p = facerec.create("protocol", "synthetic-pairs", pairs_per_fold=20, image_size=32)
    ia, ib, same = p.pairs
    assert len(same) == 200 and int(same.sum()) == 100
    assert bool((p.plan["identity"][ia] == p.plan["identity"][ib])[same].all())
    assert not bool((p.plan["identity"][ia] == p.plan["identity"][ib])[~same].any())
    # folds use disjoint identities
    ids_a = p.plan["identity"][ia].view(10, 20)
    assert all(not set(ids_a[i].tolist()) & set(ids_a[j].tolist()) for i in range(10) for j in range(i))
    assert p.evaluate_features(_oracle(p)).metrics["accuracy"] == 1.0
    g = torch.Generator().manual_seed(0)
    rand = {k: torch.randn(16, generator=g) for k in p.keys}
    assert 0.3 < p.evaluate_features(rand).metrics["accuracy"] < 0.7
    with pytest.raises(FacerecError, match="have no feature"):
        p.evaluate_features(dict(list(rand.items())[:-3]))


def test_pose_pairs_are_frontal_against_profile():
    p = facerec.create("protocol", "synthetic-pose-pairs", pairs_per_fold=10, image_size=32)
    yaw = p.plan["yaw"]
    ia, ib, _ = p.pairs
    assert float(yaw[ia].abs().max()) <= 10.0 and float(yaw[ib].abs().min()) >= 65.0
    assert p.evaluate_features(_oracle(p)).metrics["accuracy"] == 1.0


def test_nir_vis_and_lowres_protocols_with_oracle_and_evaluate():
    nv = facerec.create("protocol", "synthetic-nir-vis", num_ids=6, nir_per_id=2, image_size=32)
    assert nv.plan["modality"].tolist() == [0] * 6 + [1] * 12
    m = nv.evaluate_features(_oracle(nv)).metrics
    assert m["rank1"] == 1.0 and m["vr@far=1e-3"] == 1.0
    lr = facerec.create("protocol", "synthetic-lowres", num_ids=5, probes_per_id=2, resolutions=(8, 16), image_size=32)
    m = lr.evaluate_features(_oracle(lr)).metrics
    assert set(m) == {f"{k}@{r}" for k in ("rank1", "accuracy") for r in ("8px", "16px", "full")}
    assert all(v == 1.0 for v in m.values())
    # evaluate renders and embeds: a mean-colour embedder gives valid numbers in [0, 1]
    res = lr.evaluate(lambda x: x.mean((2, 3)), batch_size=16)
    assert all(0.0 <= v <= 1.0 for v in res.metrics.values())
    with pytest.raises(ParameterError, match="probe_modality"):
        facerec.create("protocol", "synthetic-nir-vis", probe_modality="SWIR")


# ------------------------------------------------------------------------------------------ grid


def test_save_grid_writes_labelled_png(tmp_path):
    imgs = render(torch.arange(5), torch.zeros(5, dtype=torch.long), size=40)
    out = save_grid(imgs, tmp_path / "grid.png", labels=torch.arange(5), captions=["a", "b", "c", "d", "e"], ncol=3)
    im = np.asarray(Image.open(out))
    assert im.shape[1] == 3 * 42 + 2 and im.shape[0] > 2 * 40
    assert not list(tmp_path.glob(".*tmp*"))  # temporary file renamed away
    # the first tile is the first image, exactly (uint8 rounding)
    tile = torch.from_numpy(im[2:42, 2:42].copy()).permute(2, 0, 1).float() / 255
    assert (tile - imgs[0]).abs().max() < 1 / 255 + 1e-6
    with pytest.raises(ParameterError, match="labels"):
        save_grid(imgs, tmp_path / "x.png", labels=[1, 2])
    with pytest.raises(FacerecError, match="does not exist"):
        save_grid(imgs, tmp_path / "missing" / "x.png")


# ------------------------------------------------------------------------------------------ CLI


def test_cli_shows_synthetic_components_and_grid(run_facerun, tmp_path):
    out = run_facerun("info", "dataset", "synthetic-lowres").stdout
    assert "resolutions" in out and "image_size" in out
    out = run_facerun("info", "protocol", "synthetic-pairs").stdout
    assert "pairs_per_fold" in out
    proc = run_facerun(
        "data",
        "show",
        "synthetic-nir-vis",
        "--out",
        str(tmp_path / "g.png"),
        "--count",
        "10",
        "--param",
        "num_ids=5",
        "--param",
        "image_size=48",
    )
    assert (tmp_path / "g.png").stat().st_size > 1000, proc.stdout
    bad = run_facerun(
        "data", "show", "synthetic", "--out", str(tmp_path / "h.png"), "--param", "num_ids=0", check=False
    )
    assert bad.returncode != 0 and "num_ids" in bad.stderr and "Traceback" not in bad.stderr
