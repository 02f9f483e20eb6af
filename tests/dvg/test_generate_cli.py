"""`facerun generate --generator dvg`: paired NIR/VIS images of new identities, written and read back."""

from __future__ import annotations

import pytest
import torch

import facerec
from facerec.weights import save_weights


@pytest.fixture
def generator_file(tmp_path):
    """A small DVG-Face generator with stored attribute codes of real pairs (what sampling needs)."""
    torch.manual_seed(0)
    gen = facerec.create("generator", "dvg", image_size=16, width=0.25, num_attributes=8)
    data = facerec.create("dataset", "synthetic-nir-vis", num_ids=4, image_size=16)
    gen.store_attributes(data)
    path = tmp_path / "dvg.safetensors"
    save_weights(gen, path, {"arch": "dvg", "image_size": 16})
    return path


def _read_back(out, fmt):
    if fmt == "lmdb":
        return facerec.create("dataset", "lmdb", path=str(out))
    if fmt == "list":
        return facerec.create("dataset", "image-list", path=str(out / "list.txt"), modality_rule=2)
    return facerec.create("dataset", "image-folder", root=str(out), modality_rule=r"_(NIR|VIS)\.")


@pytest.mark.parametrize("fmt", ["lmdb", "folder", "list"])
def test_generate_dvg_pairs_and_read_them_back(run_facerun, tmp_path, generator_file, fmt):
    out = tmp_path / ("gen.lmdb" if fmt == "lmdb" else "gen")
    run_facerun(
        "generate",
        "--generator",
        "dvg",
        "--weights",
        str(generator_file),
        "--param",
        "image_size=16",
        "--param",
        "width=0.25",
        "--param",
        "num_attributes=8",
        "--ids",
        "5",
        "--per-id",
        "4",
        "--out",
        str(out),
        "--format",
        fmt,
        "-q",
    )
    data = _read_back(out, fmt)
    assert len(data) == 5 * 4  # per identity: 2 NIR/VIS pairs
    labels = data.labels
    assert sorted(labels.unique().tolist()) == list(range(5)) and torch.bincount(labels).tolist() == [4] * 5
    batch = data.batch(list(range(len(data))))
    images = torch.as_tensor(batch["image"]).float()
    assert images.shape[-2:] == (16, 16) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # every identity has its NIR and its VIS images marked as such (1 = NIR, 0 = VIS), in every format
    modality = data.modality
    assert modality is not None and len(modality) == len(data)
    for label in range(5):
        assert sorted(modality[labels == label].tolist()) == [0, 0, 1, 1]
    if fmt == "folder":  # the file name says it, where the DVG originals' loaders look for it
        assert len(list(out.glob("*/*_NIR.jpg"))) == 10 and len(list(out.glob("*/*_VIS.jpg"))) == 10
    # different identities render different faces (not one constant image)
    assert not torch.allclose(images[labels == 0].mean(0), images[labels == 1].mean(0), atol=1e-3)


def test_generate_dvg_without_attribute_codes_fails_cleanly(run_facerun, tmp_path):
    gen = facerec.create("generator", "dvg", image_size=16, width=0.25, num_attributes=8)  # never fitted
    path = tmp_path / "empty.safetensors"
    save_weights(gen, path, {"arch": "dvg"})
    proc = run_facerun(
        "generate",
        "--generator",
        "dvg",
        "--weights",
        str(path),
        "--param",
        "image_size=16",
        "--param",
        "width=0.25",
        "--param",
        "num_attributes=8",
        "--ids",
        "2",
        "--per-id",
        "2",
        "--out",
        str(tmp_path / "x.lmdb"),
        "-q",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_generate_without_weights_warns(run_facerun, tmp_path):
    proc = run_facerun(
        "generate",
        "--generator",
        "dvg-neurips",
        "--param",
        "image_size=16",
        "--param",
        "width=0.25",
        "--param",
        "hdim=8",
        "--ids",
        "2",
        "--per-id",
        "2",
        "--out",
        str(tmp_path / "g.lmdb"),
        "-q",
    )
    assert "facerun generate without --weights" in proc.stderr and "RANDOM weights" in proc.stderr
    assert len(facerec.create("dataset", "lmdb", path=str(tmp_path / "g.lmdb"))) == 4
