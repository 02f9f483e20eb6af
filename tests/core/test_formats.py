"""Dataset formats on real files: image lists, image folders (JPEG/PGM/GIF), Vec2Face/HSFace LMDB."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import lmdb
import msgpack
import numpy as np
import pytest
import torch

import facerec
from facerec.data.decode import decode_image, encode_jpeg, read_image
from facerec.data.formats import ImageFolder, ImageList, LMDBDataset, detect_format, open_dataset
from facerec.errors import DataError, FacerecError, ParameterError


def _faces(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def _jpeg_tree(root: Path, ids: int = 3, per_id: int = 2, size: int = 24) -> list[tuple[str, int]]:
    """Real JPEG files root/<name>/<k>.jpg; returns (relpath, label) in sorted order."""
    imgs = _faces(ids * per_id, size)
    out = []
    for i in range(ids):
        (root / f"person_{i}").mkdir(parents=True)
        for k in range(per_id):
            rel = f"person_{i}/{k:02d}.jpg"
            (root / rel).write_bytes(encode_jpeg(imgs[i * per_id + k]))
            out.append((rel, i))
    return out


# ---------------------------------------------------------------------------------------- decoding


def test_decode_jpeg_matches_pil(tmp_path):
    from PIL import Image

    data = encode_jpeg(_faces(1, 32)[0], quality=90)
    ours = decode_image(data)
    pil = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1).float() / 255
    assert ours.shape == (3, 32, 32) and ours.dtype == torch.float32
    assert torch.allclose(ours, pil, atol=1 / 255 + 1e-6)


def test_pil_fallback_decodes_and_encodes_the_same(monkeypatch):
    from facerec.data import decode

    data = encode_jpeg(_faces(1, 32)[0])
    fast = decode_image(data)
    monkeypatch.setattr(decode, "_OPS", False)  # as where torchvision's codec ops are unavailable
    assert torch.equal(decode_image(data), fast)  # both are libjpeg-turbo: bit-identical
    again = decode_image(encode_jpeg(fast))
    assert (again - fast).abs().mean() < 0.02


def test_decode_corrupt_names_source():
    with pytest.raises(DataError, match="cannot decode JPEG face.jpg"):
        decode_image(b"\xff\xd8\xff\xe0" + b"\x00" * 40, source="face.jpg")
    with pytest.raises(DataError, match="junk.bin"):
        decode_image(b"definitely not an image", source="junk.bin")


def test_pgm_and_extensionless_gif(shared_data):
    pgm = read_image(shared_data / "att_faces" / "s1" / "1.pgm")
    assert pgm.shape == (3, 112, 92)
    assert torch.equal(pgm[0], pgm[1]) and 0 <= float(pgm.min()) < float(pgm.max()) <= 1  # gray -> 3 equal channels
    gif = read_image(shared_data / "yalefaces" / "subject01.happy")
    assert gif.shape == (3, 243, 320)
    assert read_image(shared_data / "yalefaces" / "subject01.happy", image_size=112).shape == (3, 112, 112)


# ---------------------------------------------------------------------------------------- image lists


def test_image_list_variants(tmp_path):
    tree = _jpeg_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "with space").mkdir()
    (tmp_path / "imgs" / "with space" / "a b.jpg").write_bytes((tmp_path / "imgs" / tree[0][0]).read_bytes())
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n\n" + "\n".join(f"{r} {lab}" for r, lab in tree) + "\nwith space/a b.jpg 7.0\n")
    ds = ImageList(lst, root=tmp_path / "imgs")
    assert len(ds) == 7 and ds.num_classes == 8
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 7]
    assert ds.relpaths[-1] == "with space/a b.jpg"
    assert torch.equal(ds[6]["image"], ds[0]["image"])
    assert ds.modality is None and "modality" not in ds[0]
    # no label column -> -1 (DVG's generated img_list.txt)
    (tmp_path / "imgs" / "nolabel.txt").write_text("person_0/00.jpg\n")
    assert ImageList(tmp_path / "imgs" / "nolabel.txt").labels.tolist() == [-1]


def test_image_list_modality_rules(tmp_path):
    root = tmp_path / "nirvis"
    imgs = _faces(4)
    for i, rel in enumerate(
        ["NIR/s2_NIR_1_001.jpg", "VIS/s2_VIS_1_001.jpg", "NIR/s2_NIR_2_001.jpg", "VIS/s2_VIS_2_001.jpg"]
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode_jpeg(imgs[i]))
    # DVG NeurIPS: `path label domain` with domain 0 = NIR, 1 = VIS
    dvg = root / "dvg.txt"
    dvg.write_text(
        "NIR/s2_NIR_1_001.jpg 0 0\nVIS/s2_VIS_1_001.jpg 0 1\nNIR/s2_NIR_2_001.jpg 1 0\nVIS/s2_VIS_2_001.jpg 1 1\n"
    )
    ds = ImageList(dvg, modality_rule=2, modality_values="NIR,VIS")
    assert ds.modality.tolist() == [1, 0, 1, 0]  # facerec convention: 0 = VIS, 1 = NIR
    assert ds[0]["modality"] == 1 and ds.labels.tolist() == [0, 0, 1, 1]
    # DVG-Face: `path label` and the modality from a regex on the path (here anchored on the folder)
    plain = root / "plain.txt"
    plain.write_text("NIR/s2_NIR_1_001.jpg 0\nVIS/s2_VIS_1_001.jpg 0\n")
    assert ImageList(plain, modality_rule=r"^NIR/").modality.tolist() == [1, 0]
    assert ImageList(plain, modality_rule=r"^(NIR|VIS)/").modality.tolist() == [1, 0]
    # textual modality column
    text = root / "text.txt"
    text.write_text("NIR/s2_NIR_1_001.jpg 3 NIR\nVIS/s2_VIS_1_001.jpg 3 vis\n")
    t = ImageList(text, modality_rule=2)
    assert t.modality.tolist() == [1, 0] and t.labels.tolist() == [3, 3]
    # through the registry, as a user would
    reg = facerec.create("dataset", "image-list", path=str(dvg), modality_rule="2", modality_values="NIR,VIS")
    assert reg.modality.tolist() == [1, 0, 1, 0]


def test_image_list_errors(tmp_path):
    _jpeg_tree(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("person_0/00.jpg 0\nperson_0/01.jpg 1.5\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: label '1.5' is not an integer"):
        ImageList(bad)
    with pytest.raises(DataError, match="image list not found"):
        ImageList(tmp_path / "missing.txt")
    with pytest.raises(ParameterError, match="not a valid regular expression"):
        ImageList(bad, modality_rule="([")
    two = tmp_path / "two.txt"
    two.write_text("person_0/00.jpg 0 2\n")
    with pytest.raises(DataError, match=r"two.txt line 1: modality value '2'"):
        ImageList(two, modality_rule=2)
    missing = tmp_path / "missing_img.txt"
    missing.write_text("person_0/00.jpg 0\nnope/gone.jpg 1\n")
    ds = ImageList(missing)
    with pytest.raises(DataError, match="image file not found: .*nope/gone.jpg"):
        ds[1]
    ds_skip = ImageList(missing, skip_corrupt=True)
    assert ds_skip[1]["label"] == 0 and ds_skip.skipped == {1}


# ---------------------------------------------------------------------------------------- image folders


def test_image_folder_real_faces(shared_data):
    att = ImageFolder(shared_data / "att_faces")  # s<N>/<k>.pgm; the README beside them is ignored
    assert len(att) == 400 and att.num_classes == 40 and len(att.classes) == 40
    assert att.classes[:3] == ["s1", "s10", "s11"]  # sorted names -> labels (torchvision order)
    item = att[0]
    assert item["image"].shape == (3, 112, 92) and item["label"] == 0
    yale = ImageFolder(shared_data / "yalefaces", label_pattern=r"subject(\d+)", image_size=64)
    assert len(yale) == 164 and yale.num_classes == 15
    batch = yale.batch([0, 50, 163])
    assert batch["image"].shape == (3, 3, 64, 64) and batch["label"].tolist() == [0, 4, 14]
    lfw = ImageFolder(shared_data / "lfw" / "lfw-aligned-112x112")
    assert len(lfw) == 13233 and lfw.num_classes == 5749
    assert lfw[0]["image"].shape == (3, 112, 112)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        ImageFolder(tmp_path / "empty")
    tree = _jpeg_tree(tmp_path / "t")
    (tmp_path / "t" / tree[1][0]).write_bytes(b"\xff\xd8\xff\xe0broken")
    ds = ImageFolder(tmp_path / "t")
    with pytest.raises(DataError, match=r"cannot decode JPEG .*person_0/01.jpg"):
        ds[1]


# ---------------------------------------------------------------------------------------- LMDB


def _vec2face_lmdb(path: Path, n: int = 6, features: bool = True, corrupt: int | None = None) -> torch.Tensor:
    """An LMDB exactly as Vec2Face's prepare_training_set.py writes it (no facerec extension keys)."""
    imgs = _faces(n, 16)
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24, readonly=False, meminit=False, map_async=True)
    keys = []
    with env.begin(write=True) as txn:
        for i in range(n):
            jpeg = encode_jpeg(imgs[i])
            if i == corrupt:
                jpeg = jpeg[:20]
            buf = io.BytesIO()
            np.save(buf, np.full(8, i, dtype=np.float32))
            value = (jpeg, buf.getvalue(), i // 2) if features else (jpeg, i // 2)
            key = f"{i}".encode("ascii")
            txn.put(key, msgpack.dumps(value))
            keys.append(key)
        txn.put(b"__keys__", msgpack.dumps(keys))
        txn.put(b"__len__", msgpack.dumps(len(keys)))
        txn.put(b"__classnum__", msgpack.dumps(n // 2))
    env.close()
    return imgs


def test_lmdb_original_vec2face_layout(tmp_path):
    path = tmp_path / "train.lmdb"
    imgs = _vec2face_lmdb(path)
    ds = LMDBDataset(path)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.has_features
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]  # scanned without decoding (no __labels__ key)
    item = ds[3]
    assert item["image"].shape == (3, 16, 16) and item["label"] == 1
    assert torch.equal(item["feature"], torch.full((8,), 3.0))
    assert (item["image"] - imgs[3]).abs().mean() < 0.03  # JPEG round trip (lossy)
    batch = ds.batch([0, 5])
    assert batch["feature"].shape == (2, 8) and batch["image"].shape == (2, 3, 16, 16)
    # A batch is the items stacked, in channels-last memory (no stride-3 gather of the decoded HWC pixels).
    assert torch.equal(batch["image"], torch.stack([ds[0]["image"], ds[5]["image"]]))
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    # HSFace / SOTA-FR variant: (jpeg, label)
    hs = tmp_path / "hs.lmdb"
    _vec2face_lmdb(hs, features=False)
    h = LMDBDataset(hs)
    assert not h.has_features and "feature" not in h[0] and h.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert detect_format(path) == "lmdb" and isinstance(open_dataset(hs), LMDBDataset)


def test_lmdb_label_scan_reads_only_headers(tmp_path):
    """Labels of original files come from the record headers; legacy msgpack (bytes as str) and
    large ids (MS1M class ids up to 85707, multi-byte ints) included."""
    path = tmp_path / "legacy.lmdb"
    imgs = _faces(4, 16)
    labels = [0, 127, 85707, 2**33]
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, lab in enumerate(labels):
            buf = io.BytesIO()
            np.save(buf, np.zeros(4, dtype=np.float32))
            txn.put(str(i).encode(), msgpack.packb((encode_jpeg(imgs[i]), buf.getvalue(), lab), use_bin_type=False))
        txn.put(b"__keys__", msgpack.packb([str(i).encode() for i in range(4)], use_bin_type=False))
        txn.put(b"__len__", msgpack.packb(4))
    env.close()
    ds = LMDBDataset(path)
    assert ds.labels.tolist() == labels and ds.classnum is None and ds.num_classes == 2**33 + 1
    assert ds[2]["label"] == 85707 and ds[2]["image"].shape == (3, 16, 16) and ds[2]["feature"].shape == (4,)


@pytest.mark.parametrize("label", [0, 127, 85707, 2**33])
@pytest.mark.parametrize("bin_type", [True, False], ids=["bin-type", "legacy-str"])
def test_record_label_reads_the_header_alone(label, bin_type):
    from facerec.data.formats import record_label

    packed = msgpack.packb((b"x" * 300, label), use_bin_type=bin_type)
    assert record_label(memoryview(packed), "t") == label


def test_lmdb_mask(tmp_path):
    path = tmp_path / "train.lmdb"
    _vec2face_lmdb(path)
    mask = tmp_path / "mask.npy"
    np.save(mask, np.array([5, 1, 2]))
    ds = LMDBDataset(path, mask=mask)
    assert len(ds) == 3 and ds.labels.tolist() == [2, 0, 1]
    assert torch.equal(ds[0]["feature"], torch.full((8,), 5.0))
    np.save(mask, np.array([0, 6]))
    with pytest.raises(DataError, match="record index 6 outside 0..5"):
        LMDBDataset(path, mask=mask)
    np.save(mask, np.array([0.5]))
    with pytest.raises(DataError, match="1-D integer array"):
        LMDBDataset(path, mask=mask)


def test_lmdb_corrupt_records(tmp_path):
    path = tmp_path / "bad.lmdb"
    _vec2face_lmdb(path, corrupt=2)
    ds = LMDBDataset(path)
    with pytest.raises(DataError, match=r"bad.lmdb key '2'"):
        ds[2]
    skip = LMDBDataset(path, skip_corrupt=True)
    assert skip[2]["label"] == 1 and torch.equal(skip[2]["feature"], torch.full((8,), 3.0))
    assert skip.skipped == {2}
    # a record that is not msgpack at all
    garbage = tmp_path / "garbage.lmdb"
    _vec2face_lmdb(garbage)
    env = lmdb.open(str(garbage), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"4", b"\xc1garbage")
    env.close()
    with pytest.raises(DataError, match=r"garbage.lmdb key '4'.*not valid msgpack"):
        LMDBDataset(garbage)  # the label scan reads every record
    (tmp_path / "nometa.lmdb").write_bytes(b"")
    env = lmdb.open(str(tmp_path / "nometa.lmdb"), subdir=False)
    env.close()
    with pytest.raises(DataError, match="no __keys__ key"):
        LMDBDataset(tmp_path / "nometa.lmdb")


def test_lmdb_readonly_lockfree_and_workers(tmp_path):
    path = tmp_path / "ro" / "train.lmdb"
    path.parent.mkdir()
    _vec2face_lmdb(path)
    (path.parent / "train.lmdb-lock").unlink()  # the writer's lock file: readers must neither need nor make one
    os.chmod(path, 0o444)
    try:
        ds = LMDBDataset(path)
        assert ds[0]["label"] == 0
        clone = pickle.loads(pickle.dumps(ds))  # pickles without the open handle
        assert clone[1]["label"] == 0
        loader = torch.utils.data.DataLoader(
            ds, batch_size=3, num_workers=2, multiprocessing_context="spawn" if os.name == "nt" else "fork"
        )
        labels = torch.cat([b["label"] for b in loader])
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert not (path.parent / "train.lmdb-lock").exists()
    finally:
        os.chmod(path, 0o644)


def test_registered_formats_are_facerec_errors(tmp_path):
    with pytest.raises(FacerecError, match="LMDB not found"):
        facerec.create("dataset", "lmdb", path=str(tmp_path / "none.lmdb"))
    tree = _jpeg_tree(tmp_path / "f")
    ds = facerec.create("dataset", "image-folder", root=str(tmp_path / "f"), image_size=32)
    assert len(ds) == len(tree) and ds[0]["image"].shape == (3, 32, 32)
