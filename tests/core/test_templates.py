"""Alignment templates as registered components, data that declares its template, and the warp from
the data's template to the model's (issue 21: a model on another crop used to get a silent resize)."""

from __future__ import annotations

import json
import math

import lmdb
import msgpack
import numpy as np
import pytest
import torch
from torch import nn

import facerec
from facerec import registry
from facerec.api import Backbone, InputSpec
from facerec.data import align
from facerec.errors import FacerecError, ParameterError
from facerec.protocols.common import plan_input


def _blobs(points, size, sigma=1.2):
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    img = torch.zeros(size, size, dtype=torch.float64)
    for x, y in points:
        img += torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img.clamp(0, 1).float().expand(3, size, size)


def _centroids(img, points, radius=4):
    """Intensity centroid near each expected point (sub-pixel, unlike argmax)."""
    out = []
    for x, y in points:
        x0, y0 = int(round(x)), int(round(y))
        win = img[0, y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1].double()
        ys, xs = torch.meshgrid(
            torch.arange(y0 - radius, y0 + radius + 1, dtype=torch.float64),
            torch.arange(x0 - radius, x0 + radius + 1, dtype=torch.float64),
            indexing="ij",
        )
        out.append(((win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()))
    return np.array(out, dtype=float)


SEEN: list[torch.Tensor] = []


class Spy(Backbone):
    """Records the prepared inputs it sees (also through the copies the fast path makes); embeds by
    flattening a coarse copy of them."""

    embedding_size = 12

    def __init__(self, template: str, size: int):
        super().__init__()
        self.input_spec = InputSpec(size=size, template=template)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        SEEN.append(x.detach().float().clone())
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) + self.dummy


@pytest.mark.parametrize("name", sorted(align.TEMPLATES))
def test_core_template_lookup_by_name(name):
    tpl, got = align.TEMPLATES[name], align.get_template(name)
    assert got.name == name and got.size == tpl.size and np.array_equal(got.points, tpl.points)


def test_core_templates_are_registered_components_listed_by_facerun(run_facerun):
    names = {c.name for c in registry.components("template")}
    assert {"arcface112", "lightcnn144", "dcr120", "vggface2"} <= names
    assert all(c.distribution == "facerec-core" for c in registry.components("template") if c.name in align.TEMPLATES)
    rows = json.loads(run_facerun("plugins", "--json").stdout)
    listed = {r["name"]: r for r in rows if r["kind"] == "template"}
    assert {"arcface112", "lightcnn144", "dcr120", "vggface2"} <= set(listed)
    assert "ArcFace" in listed["arcface112"]["summary"]  # the template's origin, read without importing
    text = run_facerun("plugins").stdout
    assert "templates:" in text


def test_unknown_template_is_one_line_listing_the_known_ones():
    with pytest.raises(FacerecError) as err:
        align.get_template("dlib-nope")
    msg = str(err.value)
    assert "unknown alignment template 'dlib-nope'" in msg and "arcface112" in msg and "\n" not in msg
    with pytest.raises(FacerecError, match="5 finite"):
        align.Template("bad", 100, np.zeros((4, 2)))
    with pytest.raises(FacerecError, match="positive int"):
        align.Template("bad", 0, np.zeros((5, 2)))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(size=112, color="bgr"), "color must be exactly one of RGB, BGR, GRAY, got 'bgr'"),
        (dict(size=112, color="Gray"), "got 'Gray'"),
        (dict(size=112, mean=(0.5, 0.5)), "mean has 2 values; a RGB input takes 1 or 3"),
        (dict(size=112, color="GRAY", std=(1, 2, 3)), "std has 3 values; a GRAY input takes 1"),
        (dict(size=112, std=(1.0, 0.0, 1.0)), "std must be positive"),
        (dict(size=(112, 0)), "size must be positive"),
        (dict(size="big"), "size must be an int"),
        (dict(size=112, scale=0.0), "scale must be a positive number"),
        (dict(size=112, mean=float("nan")), "mean must be finite"),
        (dict(size=224, resize=200), "resize"),
        (dict(size=112, template=""), "template must name"),
        (dict(size=112, template=None), "template must name"),
    ],
)
def test_input_spec_is_validated_on_construction(kwargs, fragment):
    with pytest.raises(ParameterError) as err:
        InputSpec(**kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_input_spec_formula_and_unknown_template_at_first_use():
    spec = InputSpec(
        size=4, color="BGR", scale=255.0, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0), template="not-registered"
    )
    img = torch.rand(2, 3, 4, 4)
    want = (img.flip(1) * 255.0 - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)) / torch.tensor(
        [2.0, 4.0, 8.0]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(spec.prepare(img), want)
    with pytest.raises(FacerecError, match="unknown alignment template 'not-registered'"):
        spec.alignment()
    with pytest.raises(FacerecError, match="unknown alignment template 'not-registered'"):
        plan_input(Spy("not-registered", 16), None, "arcface112")


def test_equivalent_templates_need_no_warp_and_others_get_one():
    assert align.template_warp("arcface112", "dcr120", 120) is None  # dcr120 is ArcFace scaled to 120
    assert align.template_warp("arcface112", "arcface112", 224) is None
    w = align.template_warp("arcface112", "lightcnn144", 144)
    assert w is not None and w.load_size == 112 and w.out_size == 144
    assert w.scale == pytest.approx(128 / 112, rel=1e-9)
    # shrinking: decoded smaller (antialiased by the decoder) so the warp itself does not shrink
    down = align.template_warp("vggface2", "arcface112", 112)
    assert down.load_size < 256 and down.scale == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    "source, target", [("arcface112", "lightcnn144"), ("vggface2", "arcface112"), ("lightcnn144", "arcface112")]
)
def test_warp_moves_landmarks_from_one_template_onto_the_other(source, target):
    src, dst = align.get_template(source), align.get_template(target)
    w = align.template_warp(src, dst, dst.size)
    img = _blobs(src.at(w.load_size), w.load_size)
    out = w(img[None])[0]
    assert out.shape == (3, dst.size, dst.size)
    err = np.abs(_centroids(out, dst.points) - dst.points).max()
    assert err < 0.35, err  # the two point sets are not similar exactly: least squares leaves a residual


def test_pairs_protocol_warps_arcface_data_to_the_models_template(tmp_path, capfd):
    """Data aligned to ArcFace 112 reaches a LightCNN-templated model with its landmarks on lightcnn144."""
    from PIL import Image

    src = align.get_template("arcface112")
    face = (_blobs(src.points, 112)[0].numpy() * 255).round().astype(np.uint8)
    lines = []
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        for k in (1, 2):
            Image.fromarray(np.stack([face] * 3, -1)).save(tmp_path / name / f"{name}_{k:04d}.png")
        lines.append(f"{name} 1 2")
    lines += ["A 1 B 2", "A 2 B 1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    spy = Spy("lightcnn144", 144)
    proto = facerec.create("protocol", "pairs", data=str(tmp_path), n_folds=2)
    assert proto.template == "arcface112"  # insightface's convention unless told otherwise
    proto.evaluate(spy, batch_size=8)
    seen = SEEN[-1]  # the last batch: the four images (the fast path's checks ran before)
    dst = align.get_template("lightcnn144")
    assert seen.shape[-2:] == (144, 144)
    assert np.abs(_centroids(seen[0], dst.points) - dst.points).max() < 0.5
    err = capfd.readouterr().err
    assert err.count("warped to lightcnn144") == 1  # said once, on stderr
    # told that the data is already on the model's template: resized only, no warp, nothing said
    facerec.create("protocol", "pairs", data=str(tmp_path), n_folds=2, template="lightcnn144").evaluate(spy)
    plain = SEEN[-1]
    scaled = (src.points + 0.5) * 144 / 112 - 0.5
    assert np.abs(_centroids(plain[0], scaled) - scaled).max() < 0.5
    assert "warped" not in capfd.readouterr().err


def test_lmdb_declares_its_template(tmp_path):
    from PIL import Image

    from facerec.data.formats import TEMPLATE_KEY, LMDBDataset, close_reader, open_dataset
    from facerec.data.writers import write_dataset

    folder = tmp_path / "faces"
    for name in ("x", "y"):
        (folder / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(folder / name / "0.png")
    out = tmp_path / "faces.lmdb"
    write_dataset(open_dataset(folder), out, "lmdb")
    assert LMDBDataset(out).template is None
    close_reader(out)
    env = lmdb.open(str(out), subdir=out.is_dir(), map_size=1 << 24)
    with env.begin(write=True) as txn:  # what `facerun data align` writes beside the records
        txn.put(TEMPLATE_KEY, "lightcnn144".encode())
        assert msgpack.unpackb(txn.get(b"__len__")) == 2
    env.close()
    assert LMDBDataset(out).template == "lightcnn144"
    assert LMDBDataset(out, template="arcface112").template == "arcface112"  # the caller's word wins
    with pytest.raises(FacerecError, match="template must name"):
        open_dataset(folder, template="")


def test_undeclared_data_is_resized_and_that_is_said(capfd):
    plan = plan_input(Spy("arcface112", 56), None, None)
    assert plan.warp is None and plan.load_size == 56
    assert "declares no alignment template" in capfd.readouterr().err
    plan = plan_input(Spy("lightcnn144", 144), 200, "arcface112")  # an explicit decode size is kept
    assert plan.load_size == 200 and plan.warp.load_size == 200
    assert math.isclose(plan.warp.scale, 128 / 112 * 112 / 200, rel_tol=1e-9)
