"""insightface RecordIO (.rec/.idx/property): facerec's files against a reader written here from the
format's definition (not facerec's), facerec's reader against files written here the same way, the
CLI (info, convert both ways, resume), corrupt and truncated records, forked DataLoader workers."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facerec
from facerec.data.formats import detect_format, open_dataset
from facerec.data.recordio_dataset import RecordIODataset
from facerec.data.writers import write_dataset
from facerec.errors import DataError

# ---------------------------------------------------------------------------- the format, independently
# dmlc RecordIO: uint32 magic, uint32 (cflag << 29 | length), data, zero pad to 4 bytes; data holding the
# magic at an aligned position is split there (cflag 1 first, 2 middle, 3 last) and the magic dropped.
# Image record data: struct '<IfQQ' (flag, label, id, id2), flag > 0: flag float32 labels, then the image.
MAGIC = 0xCED7230A


def independent_read(rec: Path, idx: Path) -> dict[int, tuple]:
    """key -> (flag, label or label list, id, id2, image bytes), reading the files by hand."""
    out = {}
    blob = rec.read_bytes()
    for line in idx.read_text().splitlines():
        key, offset = (int(v) for v in line.split("\t"))
        pos, data = offset, b""
        while True:
            magic, lrec = struct.unpack("<II", blob[pos : pos + 8])
            assert magic == MAGIC, f"record {key}: magic {magic:x}"
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            data += blob[pos + 8 : pos + 8 + length]
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
            data += struct.pack("<I", MAGIC)
        flag, label, rid, id2 = struct.unpack("<IfQQ", data[:24])
        if flag > 0:
            label = list(struct.unpack(f"<{flag}f", data[24 : 24 + 4 * flag]))
        out[key] = (flag, label, rid, id2, data[24 + 4 * flag :])
    return out


def independent_write(rec: Path, idx: Path, records: list[tuple[int, object, bytes]]) -> None:
    """Write ``(key, label or label list, image)`` records by hand (splitting at aligned magics)."""
    blob, lines = b"", []
    for key, label, image in records:
        if isinstance(label, list):
            data = struct.pack("<IfQQ", len(label), 0.0, key, 0) + struct.pack(f"<{len(label)}f", *label) + image
        else:
            data = struct.pack("<IfQQ", 0, float(label), key, 0) + image
        lines.append(f"{key}\t{len(blob)}")
        cuts = [i for i in range(0, len(data) - len(data) % 4, 4) if struct.unpack("<I", data[i : i + 4])[0] == MAGIC]
        start = 0
        for n, cut in enumerate(cuts):
            blob += struct.pack("<II", MAGIC, (1 if n == 0 else 2) << 29 | (cut - start)) + data[start:cut]
            start = cut + 4
        blob += struct.pack("<II", MAGIC, (3 if cuts else 0) << 29 | (len(data) - start)) + data[start:]
        blob += b"\0" * (-len(data) % 4)
    rec.write_bytes(blob)
    idx.write_text("\n".join(lines) + "\n")


def jpeg(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def synthetic(tmp_path):
    return facerec.create("dataset", "synthetic", num_ids=4, per_id=3, image_size=48)


# ------------------------------------------------------------------------------------------- tests


def test_written_rec_reads_back_with_an_independent_reader(tmp_path, synthetic):
    result = write_dataset(synthetic, tmp_path / "train.rec", "rec", chunk=5)
    assert result.written == 12 and result.num_classes == 4
    src = tmp_path / "src.lmdb"
    write_dataset(synthetic, src, "lmdb")  # the JPEGs the rec must hold, byte for byte
    lmdb = open_dataset(src)
    recs = independent_read(tmp_path / "train.rec", tmp_path / "train.idx")
    n, ids = 12, 4
    flag, header, *_ = recs[0]
    assert flag == 2 and header == [n + 1, n + 1 + ids]  # insightface header record
    labels = synthetic.labels.tolist()
    for i in range(n):
        f, label, rid, id2, image = recs[i + 1]
        assert (f, label, rid, id2) == (0, labels[i], i + 1, 0)
        assert image == lmdb.read_raw(i) and image[:3] == b"\xff\xd8\xff"
    ranges = [recs[n + 1 + j][1] for j in range(ids)]
    assert ranges == [[1 + 3 * j, 4 + 3 * j] for j in range(ids)]  # each identity's image records
    assert sorted(recs) == list(range(n + 1 + ids))
    assert (tmp_path / "property").read_text().strip() == "4,48,48"


def test_reader_handles_split_records_label_vectors_and_no_header(tmp_path):
    images = [jpeg(i) for i in range(6)]
    # an image whose data holds the record magic at 4-byte aligned positions (split into 3 parts)
    tricky = b"\xff\xd8\xff\xe0" + struct.pack("<I", MAGIC) + b"abcd" + struct.pack("<I", MAGIC) + images[5][4:]
    records = [
        (0, [7.0, 9.0], b""),
        *[(k + 1, float(k // 2), images[k]) for k in range(5)],
        (6, [2.0, 0.5], tricky),
    ]  # a label vector: its first entry is the label
    # no identity records, header says images are 1..6 (record 7 would be the first identity)
    records[0] = (0, [7.0, 7.0], b"")
    independent_write(tmp_path / "a.rec", tmp_path / "a.idx", records)
    assert (tmp_path / "a.rec").read_bytes().count(struct.pack("<I", MAGIC)) == 7 + 2  # 2 extra part headers
    ds = RecordIODataset(tmp_path / "a.rec")
    assert len(ds) == 6 and ds.header0 == (7, 7) and ds.identity_ranges is None
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.read_raw(5) == tricky and ds.read_raw(0) == images[0]
    assert isinstance(ds.record_header(5)["label"], np.ndarray)
    # without a header record every indexed record is an image; keys need not start at 0
    independent_write(tmp_path / "b.rec", tmp_path / "b.idx", [(10 + k, float(k % 3), images[k]) for k in range(5)])
    plain = RecordIODataset(tmp_path / "b.rec")
    assert plain.header0 is None and plain.labels.tolist() == [0, 1, 2, 0, 1]
    assert plain.keys.tolist() == [10, 11, 12, 13, 14]
    # without an index the records are found by scanning the .rec (keys = file order)
    (tmp_path / "b.idx").unlink()
    scanned = RecordIODataset(tmp_path / "b.rec")
    assert not scanned.indexed and scanned.labels.tolist() == [0, 1, 2, 0, 1]
    assert scanned.read_raw(4) == images[4]
    batch = scanned.batch([0, 4, 2])
    assert batch["image"].shape == (3, 3, 40, 40) and batch["image"].is_contiguous(memory_format=torch.channels_last)
    assert batch["label"].tolist() == [0, 1, 2]


def test_open_dataset_detects_rec_files_and_insightface_folders(tmp_path, synthetic):
    write_dataset(synthetic, tmp_path / "faces", "rec")  # a folder: train.rec, train.idx, property
    assert detect_format(tmp_path / "faces") == "rec"
    assert detect_format(tmp_path / "faces" / "train.rec") == "rec"
    ds = open_dataset(tmp_path / "faces", image_size=32)
    assert isinstance(ds, RecordIODataset) and ds[0]["image"].shape == (3, 32, 32)
    made = facerec.create("dataset", "rec", path=str(tmp_path / "faces" / "train.rec"))
    assert len(made) == 12 and made.num_classes == 4 and made.property_size == (48, 48)


def test_info_and_convert_both_ways_are_byte_identical(tmp_path, synthetic, run_facerun):
    write_dataset(synthetic, tmp_path / "train.rec", "rec")
    info = json.loads(run_facerun("data", "info", str(tmp_path / "train.rec"), "--json").stdout)
    assert (info["format"], info["samples"], info["identities"], info["image_size"]) == ("rec", 12, 4, [48, 48])
    assert info["identity_records"] == 4 and info["property"] == {"classes": 4, "image_size": "48x48"}
    text = run_facerun("data", "info", str(tmp_path / "train.rec")).stdout
    assert "identities: 4" in text and "samples: 12" in text
    run_facerun("data", "convert", str(tmp_path / "train.rec"), "--to", str(tmp_path / "train.lmdb"), "-q")
    run_facerun(
        "data", "convert", str(tmp_path / "train.lmdb"), "--to", str(tmp_path / "back"), "--format", "rec", "-q"
    )
    a, b = RecordIODataset(tmp_path / "train.rec"), RecordIODataset(tmp_path / "back")
    lm = open_dataset(tmp_path / "train.lmdb")
    assert a.labels.tolist() == lm.labels.tolist() == b.labels.tolist()
    assert all(a.read_raw(i) == lm.read_raw(i) == b.read_raw(i) for i in range(len(a)))
    assert (tmp_path / "back" / "train.rec").read_bytes() == (tmp_path / "train.rec").read_bytes()
    proc = run_facerun("data", "convert", str(tmp_path / "train.lmdb"), "--to", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0 and "--format" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_and_truncated_records_name_the_record_and_convert_resumes(tmp_path, synthetic, run_facerun):
    write_dataset(synthetic, tmp_path / "train.rec", "rec")
    good = (tmp_path / "train.rec").read_bytes()
    offsets = {int(k): int(o) for k, o in (ln.split("\t") for ln in (tmp_path / "train.idx").read_text().splitlines())}
    # record 10's JPEG bytes are garbage: reading (and converting) stops there, naming record 10
    bad = bytearray(good)
    bad[offsets[10] + 8 + 24 : offsets[10] + 8 + 40] = b"\0" * 16
    (tmp_path / "train.rec").write_bytes(bytes(bad))
    out = tmp_path / "out.lmdb"
    proc = run_facerun(
        "data", "convert", str(tmp_path / "train.rec"), "--to", str(out), "--chunk", "4", "-q", check=False
    )
    assert proc.returncode == 1 and "record 10" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and Path(str(out) + ".partial").exists()
    # repaired, the same command resumes after the committed chunks and gives the full output
    (tmp_path / "train.rec").write_bytes(good)
    done = run_facerun("data", "convert", str(tmp_path / "train.rec"), "--to", str(out), "--chunk", "4").stdout
    assert "resumed at 8" in done and "wrote 12 images" in done
    assert [open_dataset(out).read_raw(i) for i in range(12)] == [
        RecordIODataset(tmp_path / "train.rec").read_raw(i) for i in range(12)
    ]
    # a record whose magic is destroyed, and a file cut short inside its last record
    bad = bytearray(good)
    bad[offsets[5] : offsets[5] + 4] = b"JUNK"
    (tmp_path / "train.rec").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"record 5\b.*magic"):
        ds = RecordIODataset(tmp_path / "train.rec")
        ds.read_raw(4)
    (tmp_path / "train.rec").write_bytes(good[: offsets[16] + 20])
    proc = run_facerun("data", "info", str(tmp_path / "train.rec"), check=False)
    assert proc.returncode == 1 and "record 16" in proc.stderr and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "train.rec").write_bytes(good[: offsets[7] + 20])  # images cut: the index points past the end
    proc = run_facerun("data", "info", str(tmp_path / "train.rec"), check=False)
    assert proc.returncode == 1 and "record 8" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_forked_dataloader_workers_open_their_own_handle(tmp_path, synthetic):
    write_dataset(synthetic, tmp_path / "train.rec", "rec")
    ds = RecordIODataset(tmp_path / "train.rec")
    ds.read_raw(0)  # the parent holds an open descriptor before the fork
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    images = torch.cat([b["image"] for b in loader])
    assert torch.equal(images, ds.batch(range(12))["image"].contiguous())


def test_extract_embeds_a_rec_set_keyed_by_record(tmp_path, synthetic, run_facerun):
    write_dataset(synthetic, tmp_path / "train.rec", "rec")
    out = tmp_path / "f.safetensors"
    run_facerun(
        "extract",
        "--backbone",
        "small-cnn",
        "--param",
        "backbone.width=8",
        "--data",
        str(tmp_path / "train.rec"),
        "--out",
        str(out),
        "-q",
    )
    from facerec.protocols.common import load_features

    table = load_features(out)
    assert table.keys_list == [str(k) for k in range(1, 13)]  # image records 1..12
    assert table.labels.tolist() == synthetic.labels.tolist() and table.embeddings.shape == (12, 128)


def test_interrupted_rec_write_resumes_to_the_same_bytes(tmp_path, synthetic):
    write_dataset(synthetic, tmp_path / "src.rec", "rec")
    good = (tmp_path / "src.rec").read_bytes()
    offsets = {int(k): int(o) for k, o in (ln.split("\t") for ln in (tmp_path / "src.idx").read_text().splitlines())}
    bad = bytearray(good)
    bad[offsets[10] + 8 + 24 : offsets[10] + 8 + 40] = b"\0" * 16  # record 10's JPEG is garbage
    (tmp_path / "src.rec").write_bytes(bytes(bad))
    out = tmp_path / "out" / "train.rec"
    out.parent.mkdir()
    with pytest.raises(DataError, match="record 10"):
        write_dataset(RecordIODataset(tmp_path / "src.rec"), out, "rec", chunk=4, source="src")
    partial = tmp_path / "out" / "train.rec.partial"
    assert not out.exists() and (partial / "train.rec").is_file()
    for name in ("train.rec", "train.idx"):  # a crash inside a chunk leaves bytes past the journal
        with open(partial / name, "ab") as f:
            f.write(b"half-written chunk")
    (tmp_path / "src.rec").write_bytes(good)
    result = write_dataset(RecordIODataset(tmp_path / "src.rec"), out, "rec", chunk=4, source="src")
    assert result.resumed_from == 8 and result.written == 12 and not partial.exists()
    once = tmp_path / "once" / "train.rec"
    once.parent.mkdir()
    write_dataset(RecordIODataset(tmp_path / "src.rec"), once, "rec", chunk=4, source="src")
    assert out.read_bytes() == once.read_bytes() == good
    assert out.with_suffix(".idx").read_text() == once.with_suffix(".idx").read_text()
    assert (out.parent / "property").read_text() == (tmp_path / "property").read_text()
    with pytest.raises(DataError, match="already exists"):  # another set's property in the same folder
        write_dataset(synthetic, tmp_path / "other.rec", "rec")
