"""``Dataset.modality`` is declared once (facerec.api) and every dataset follows it: a property giving every
sample's modality (0 = VIS, 1 = NIR) without decoding, or None, agreeing with the samples' ``modality``."""

from __future__ import annotations

import inspect

import pytest
import torch
from PIL import Image

import facerec
from facerec.api import Dataset, TensorDataset
from facerec.data.cache import CachedDataset
from facerec.data.formats import ImageFolder, ImageList


def _registered_datasets() -> list[str]:
    return sorted(c.qualified for c in facerec.components("dataset") if c.error is None)


@pytest.mark.parametrize("name", _registered_datasets())
def test_every_registered_dataset_declares_modality_as_the_interface_does(name):
    cls = facerec.load("dataset", name)
    assert inspect.isclass(cls) and issubclass(cls, Dataset), f"{name} is not a facerec.api.Dataset"
    # the same form everywhere: a property (not a method, not an attribute set in __init__)
    found = next(vars(k)["modality"] for k in cls.__mro__ if "modality" in vars(k))
    assert isinstance(found, property), f"{name}: modality is a {type(found).__name__}, not a property"
    assert not hasattr(cls, "modalities"), f"{name} still has the old `modalities`"


def _check(ds: Dataset) -> torch.Tensor | None:
    """``ds.modality`` agrees with what its samples and batches carry."""
    mod = ds.modality
    batch = ds.batch(list(range(len(ds))))
    if mod is None:
        assert "modality" not in batch and "modality" not in ds[0]
        return None
    assert isinstance(mod, torch.Tensor) and not mod.is_floating_point() and tuple(mod.shape) == (len(ds),)
    assert set(mod.tolist()) <= {0, 1}
    assert torch.as_tensor(batch["modality"]).tolist() == mod.tolist()
    assert [int(ds[i]["modality"]) for i in range(len(ds))] == mod.tolist()
    return mod


def _tiny_faces(root, names):
    for i, rel in enumerate(names):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(path)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("synthetic", {"num_ids": 2, "per_id": 2}, None),
        ("synthetic-nir-vis", {"num_ids": 2, "vis_per_id": 1, "nir_per_id": 2}, [0, 1, 1] * 2),
        ("synthetic-lowres", {"num_ids": 2, "per_id": 2, "resolutions": (4, 8)}, None),
        ("synthetic-unlabeled", {"num_ids": 2, "per_id": 1}, None),
    ],
)
def test_synthetic_datasets_expose_modality(name, params, expected):
    mod = _check(facerec.create("dataset", name, image_size=16, **params))
    assert (None if mod is None else mod.tolist()) == expected


def test_files_tensors_and_cache_expose_modality(tmp_path):
    names = ["a/1_VIS.png", "a/2_NIR.png", "b/3_NIR.png"]
    _tiny_faces(tmp_path, names)
    folder = ImageFolder(tmp_path, modality_rule=r"_(NIR|VIS)\.")
    assert _check(folder).tolist() == [0, 1, 1]
    assert _check(ImageFolder(tmp_path)) is None
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{n} {i} {int('NIR' in n)}\n" for i, n in enumerate(names)))
    assert _check(ImageList(lst, modality_rule=2, modality_values="VIS,NIR")).tolist() == [0, 1, 1]
    labels = torch.tensor([0, 0, 1])
    tensors = TensorDataset(labels, features=torch.randn(3, 4), modality=torch.tensor([1, 0, 1]))
    assert _check(tensors).tolist() == [1, 0, 1]
    assert _check(TensorDataset(labels, features=torch.randn(3, 4))) is None
    cached = CachedDataset(folder, storage="uint8", fill=True)
    assert _check(cached).tolist() == [0, 1, 1]
