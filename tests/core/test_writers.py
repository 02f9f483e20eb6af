"""Writers: every format round-trips, copies stored bytes, is atomic, and resumes after interruption."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch

from facerec.api import TensorDataset
from facerec.data.decode import encode_jpeg
from facerec.data.formats import ImageFolder, ImageList, LMDBDataset, shared_reader
from facerec.data.writers import write_dataset
from facerec.errors import DataError, ParameterError


def _images(n: int, size: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 5, 5, generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def _memory_dataset(n: int = 10, modality: bool = False, features: bool = False) -> TensorDataset:
    labels = torch.arange(n) // 2
    mod = (torch.arange(n) % 2) if modality else None
    ds = TensorDataset(labels, images=_images(n), modality=mod)
    if features:  # a dataset whose samples carry a feature too (Vec2Face training records)
        feats = torch.arange(n * 4, dtype=torch.float32).view(n, 4)

        class WithFeatures(TensorDataset):
            def __getitem__(self, i):
                return {**super().__getitem__(i), "feature": feats[i]}

            def batch(self, indices):
                return {**super().batch(indices), "feature": feats[torch.as_tensor(list(indices))]}

        ds = WithFeatures(labels, images=_images(n))
    return ds


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lmdb_dump(path: Path) -> dict[bytes, bytes]:
    with shared_reader(path).begin() as txn:  # py-lmdb allows one handle per file and process
        return dict(txn.cursor())


def test_round_trip_every_format(tmp_path):
    ds = _memory_dataset(10, modality=True)
    r = write_dataset(ds, tmp_path / "data.lmdb", "lmdb")
    assert (r.written, r.num_classes, r.skipped) == (10, 5, 0)
    back = LMDBDataset(tmp_path / "data.lmdb")
    assert back.labels.tolist() == ds.labels.tolist() and back.modality.tolist() == ds.modality.tolist()
    assert (back.batch(range(10))["image"] - ds.data).abs().mean() < 0.03
    # the LMDB follows the Vec2Face layout exactly
    raw = _lmdb_dump(tmp_path / "data.lmdb")
    assert msgpack.unpackb(raw[b"__len__"]) == 10 and msgpack.unpackb(raw[b"__classnum__"]) == 5
    assert msgpack.unpackb(raw[b"__keys__"]) == [str(i).encode() for i in range(10)]
    jpeg, label = msgpack.unpackb(raw[b"7"])
    assert jpeg[:3] == b"\xff\xd8\xff" and label == 3
    assert not (tmp_path / "data.lmdb.partial").exists() and not (tmp_path / "data.lmdb-lock").exists()

    write_dataset(back, tmp_path / "lst", "list")
    lst = ImageList(tmp_path / "lst" / "list.txt", modality_rule=2)
    assert lst.labels.tolist() == ds.labels.tolist() and lst.modality.tolist() == ds.modality.tolist()
    # stored JPEGs are copied byte for byte, not re-encoded
    assert lst.read_raw(7) == back.read_raw(7)

    write_dataset(lst, tmp_path / "folder", "folder")
    folder = ImageFolder(tmp_path / "folder")
    assert folder.labels.tolist() == ds.labels.tolist() and folder.read_raw(3) == back.read_raw(3)

    write_dataset(folder, tmp_path / "again.lmdb", "lmdb")
    again = _lmdb_dump(tmp_path / "again.lmdb")
    assert again[b"3"] == raw[b"3"]  # same bytes after LMDB -> list -> folder -> LMDB


def test_features_written_in_vec2face_records(tmp_path):
    write_dataset(_memory_dataset(6, features=True), tmp_path / "f.lmdb", "lmdb")
    jpeg, npy, label = msgpack.unpackb(_lmdb_dump(tmp_path / "f.lmdb")[b"2"])
    assert npy[:6] == b"\x93NUMPY" and label == 1
    back = LMDBDataset(tmp_path / "f.lmdb")
    assert torch.equal(back[2]["feature"], torch.tensor([8.0, 9.0, 10.0, 11.0]))
    # features survive an LMDB -> LMDB copy
    write_dataset(back, tmp_path / "g.lmdb", "lmdb")
    assert torch.equal(LMDBDataset(tmp_path / "g.lmdb")[5]["feature"], torch.tensor([20.0, 21, 22, 23]))


def test_non_jpeg_sources_become_jpeg_in_lmdb(shared_data, tmp_path):
    yale = ImageFolder(shared_data / "yalefaces", label_pattern=r"subject(\d+)")
    write_dataset(yale, tmp_path / "y.lmdb", "lmdb")
    y = LMDBDataset(tmp_path / "y.lmdb")
    assert y.read_raw(0)[:3] == b"\xff\xd8\xff" and y.num_classes == 15
    assert (y[0]["image"] - yale[0]["image"]).abs().mean() < 0.02
    write_dataset(yale, tmp_path / "yl", "list")  # lists keep the original files (GIF) as they are
    assert (tmp_path / "yl" / "images" / "000000" / "00000000.gif").read_bytes() == yale.read_raw(0)


@pytest.mark.parametrize("fmt", ["lmdb", "list", "folder"])
def test_interrupt_then_resume_gives_the_same_result(tmp_path, fmt):
    ds = _memory_dataset(40, modality=fmt != "folder")
    straight = tmp_path / f"straight.{fmt}"
    write_dataset(ds, straight, fmt, chunk=8, source="mem")

    out = tmp_path / f"resumed.{fmt}"
    seen = []

    def stop_after_two_chunks(done: int, total: int) -> None:
        seen.append(done)
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(ds, out, fmt, chunk=8, source="mem", progress=stop_after_two_chunks)
    assert not out.exists() and Path(str(out) + ".partial").exists()
    r = write_dataset(ds, out, fmt, chunk=8, source="mem", progress=lambda d, t: seen.append(d))
    assert r.resumed_from == 16 and r.written == 40
    if fmt == "lmdb":
        assert _lmdb_dump(out) == _lmdb_dump(straight)
    else:
        assert _tree_digest(out) == _tree_digest(straight)


def test_partial_of_another_job_is_discarded(tmp_path):
    ds = _memory_dataset(12)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(
            ds,
            tmp_path / "o.lmdb",
            "lmdb",
            chunk=4,
            source="A",
            progress=lambda d, t: (_ for _ in ()).throw(KeyboardInterrupt()),
        )
    r = write_dataset(ds, tmp_path / "o.lmdb", "lmdb", chunk=4, source="B")
    assert r.resumed_from == 0 and len(LMDBDataset(tmp_path / "o.lmdb")) == 12


def test_existing_output_and_bad_options(tmp_path):
    ds = _memory_dataset(4)
    write_dataset(ds, tmp_path / "o", "folder")
    with pytest.raises(DataError, match="already exists"):
        write_dataset(ds, tmp_path / "o", "folder")
    write_dataset(_memory_dataset(6), tmp_path / "o", "folder", overwrite=True)
    assert len(ImageFolder(tmp_path / "o")) == 6 and not (tmp_path / "o.old").exists()
    with pytest.raises(ParameterError, match="unknown output format 'zip'"):
        write_dataset(ds, tmp_path / "z", "zip")
    with pytest.raises(DataError, match="output folder .* does not exist"):
        write_dataset(ds, tmp_path / "missing" / "x.lmdb", "lmdb")
    unlabeled = TensorDataset(torch.full((3,), -1), images=_images(3))
    with pytest.raises(DataError, match="folder format needs labelled samples"):
        write_dataset(unlabeled, tmp_path / "u", "folder")
    write_dataset(unlabeled, tmp_path / "u", "list")
    assert ImageList(tmp_path / "u" / "list.txt").labels.tolist() == [-1, -1, -1]


def test_skip_corrupt_counts(tmp_path):
    root = tmp_path / "src"
    imgs = _images(6)
    for i in range(6):
        (root / f"id{i // 3}").mkdir(parents=True, exist_ok=True)
        (root / f"id{i // 3}" / f"{i}.jpg").write_bytes(encode_jpeg(imgs[i]) if i != 4 else b"\xff\xd8\xffjunk")
    src = ImageFolder(root)
    with pytest.raises(DataError, match=r"id1/4.jpg"):
        write_dataset(src, tmp_path / "a.lmdb", "lmdb")
    r = write_dataset(src, tmp_path / "b.lmdb", "lmdb", skip_corrupt=True)
    assert (r.written, r.skipped) == (5, 1)
    assert LMDBDataset(tmp_path / "b.lmdb").labels.tolist() == [0, 0, 0, 1, 1]


def test_resize_on_write(tmp_path):
    write_dataset(_memory_dataset(4), tmp_path / "r.lmdb", "lmdb", image_size=32)
    assert LMDBDataset(tmp_path / "r.lmdb")[0]["image"].shape == (3, 32, 32)
    np.testing.assert_array_equal(LMDBDataset(tmp_path / "r.lmdb").labels.numpy(), [0, 0, 1, 1])


def test_subclass_samples_are_written_not_the_stored_bytes(tmp_path):
    """A dataset that transforms its samples (VirFace crops its lists) is written as it yields them."""
    write_dataset(_memory_dataset(4), tmp_path / "src", "folder")

    class Cropped(ImageFolder):
        def _load(self, index):
            u8, extras = super()._load(index)
            return u8[:, 2:-2, 2:-2], extras

    src = Cropped(tmp_path / "src")
    write_dataset(src, tmp_path / "c.lmdb", "lmdb")
    out = LMDBDataset(tmp_path / "c.lmdb")
    assert out[0]["image"].shape == (3, 16, 16)
    assert (out[1]["image"] - src[1]["image"]).abs().mean() < 0.03
