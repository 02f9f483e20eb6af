"""VGGFace2 identity_meta.csv and list parsing, the canonical image loader, and train augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facerec.errors import DataError
from facerec_vggface2.data import VGGFace2List, load_canonical
from facerec_vggface2.meta import read_identity_meta, read_image_list
from facerec_vggface2.runtime import augment

META = """Class_ID, Name, Sample_Num, Flag, Gender
n000001, "14th_Dalai_Lama", 424, 0, m
n000002, "A._A._Guerrero", 315, 1, f
n000003, "Bob,_Jr.", 205, 1, m
n000004, "C_D", 99, 0, f
n000005, "E_F", 120, 1, m
"""


def _dataset(root, ids=("n000002", "n000003", "n000001"), per_id=2, split="train", size=(180, 220)):
    lines = []
    rng = np.random.default_rng(0)
    for cid in ids:
        for k in range(per_id):
            rel = f"{cid}/{k:04d}_01.jpg"
            path = root / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
            lines.append(rel)
    return lines


def test_identity_meta_labels_follow_the_original(tmp_path):
    p = tmp_path / "identity_meta.csv"
    p.write_text(META)
    meta = read_identity_meta(p)
    # Flag 1 rows first (file order), then the test split
    assert meta.labels == {"n000002": 0, "n000003": 1, "n000005": 2, "n000001": 3, "n000004": 4}
    assert meta.num_train == 3
    assert meta.names["n000003"] == "Bob,_Jr."  # a bare comma inside a name is not a separator
    assert meta.is_train("n000005") and not meta.is_train("n000004")


@pytest.mark.parametrize(
    "text,where",
    [
        ("Class_ID, Name\nn1, x\n", "no column 'Flag'"),
        ("Class_ID, Name, Flag\nn1, x, 2\n", ":2: Flag must be 0"),
        ("Class_ID, Name, Flag\nn1, x, 1\nn1, y, 1\n", ":3: class id 'n1' appears twice"),
        ("Class_ID, Name, Flag\nn1, x\n", ":2: expected 3 fields"),
    ],
)
def test_identity_meta_errors_name_the_line(tmp_path, text, where):
    p = tmp_path / "m.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=where.replace("(", r"\(")):
        read_identity_meta(p)


def test_list_with_and_without_split_prefix(tmp_path):
    lines = _dataset(tmp_path)
    (tmp_path / "meta.csv").write_text(META)
    (tmp_path / "plain.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "prefixed.txt").write_text("\n".join("train/" + ln for ln in lines) + "\n")
    a = VGGFace2List(str(tmp_path), str(tmp_path / "plain.txt"), meta_file=str(tmp_path / "meta.csv"))
    b = VGGFace2List(str(tmp_path), str(tmp_path / "prefixed.txt"), meta_file=str(tmp_path / "meta.csv"))
    assert a.prefix == "train/" and b.prefix == ""
    assert a.labels.tolist() == b.labels.tolist() == [0, 0, 1, 1, 3, 3]
    assert torch.equal(a[2]["image"], b[2]["image"])
    assert a[0]["image"].shape == (3, 256, 256)
    # without a meta file: labels are the sorted class ids
    c = VGGFace2List(str(tmp_path / "train"), str(tmp_path / "plain.txt"))
    assert c.labels.tolist() == [1, 1, 2, 2, 0, 0] and c.num_classes == 3


def test_list_errors(tmp_path):
    lines = _dataset(tmp_path, ids=("n999999",), per_id=1)
    (tmp_path / "meta.csv").write_text(META)
    (tmp_path / "l.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match="'n999999'.*not in"):
        VGGFace2List(str(tmp_path), str(tmp_path / "l.txt"), meta_file=str(tmp_path / "meta.csv"))
    (tmp_path / "bad.txt").write_text("justafile.jpg\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected \[split/\]class_id/file"):
        read_image_list(tmp_path / "bad.txt")
    (tmp_path / "missing.txt").write_text("n1/x.jpg\n")
    with pytest.raises(DataError, match="not under"):
        VGGFace2List(str(tmp_path), str(tmp_path / "missing.txt"))


def test_canonical_loader_matches_resize_then_centre_crop(tmp_path):
    # a grey image with a horizontal ramp; the original broke on non-RGB files
    w, h = 301, 257
    ramp = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    Image.fromarray(ramp, mode="L").save(tmp_path / "g.png")
    img = load_canonical(tmp_path / "g.png", 256)
    assert img.shape == (3, 256, 256)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    # shorter side 257 -> 256, width int(256*301/257)=299; centre crop offset round(43/2)=22 (banker's -> 22)
    ref = Image.fromarray(ramp).resize((299, 256), Image.BILINEAR).crop((22, 0, 278, 256))
    assert torch.equal(img[0], torch.from_numpy(np.array(ref)).float() / 255)


def test_augment_crops_224_and_greys_some():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 256, 256)
    y = augment(x, g)
    assert y.shape == (64, 3, 224, 224)
    grey = (y[:, 0] == y[:, 1]).flatten(1).all(1) & (y[:, 1] == y[:, 2]).flatten(1).all(1)
    assert 2 <= int(grey.sum()) <= 30  # p = 0.2
    # colour crops are exact windows of the input
    i = int((~grey).nonzero()[0])
    win = x[i].unfold(1, 224, 1).unfold(2, 224, 1)  # [3, 33, 33, 224, 224]
    match = (win == y[i][:, None, None]).flatten(3).all(-1).all(0)
    assert bool(match.any())
