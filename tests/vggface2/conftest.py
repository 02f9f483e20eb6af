"""Shared fixture of the VGGFace2 tests: a tiny dataset in the VGGFace2 layout and a released-format .pkl."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import facerec


META = """Class_ID, Name, Sample_Num, Flag, Gender
n000001, "Test_Person", 2, 0, m
n000002, "A._A._Guerrero", 2, 1, f
n000003, "Bob,_Jr.", 2, 1, m
n000004, "C_D", 2, 1, f
"""


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    root = tmp_path_factory.mktemp("vggface2")
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    for split, ids in (("train", ("n000002", "n000003", "n000004")), ("test", ("n000001",))):
        for cid in ids:
            for k in range(2):
                p = root / split / cid / f"{k:04d}_01.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (250 + 10 * k, 200, 3), dtype=np.uint8)).save(p)
                lines[split].append(f"{cid}/{k:04d}_01.jpg")
    (root / "train_list.txt").write_text("\n".join(lines["train"]) + "\n")  # official style: no prefix
    mixed = [f"train/{x}" for x in lines["train"][:2]] + [f"test/{x}" for x in lines["test"]]
    (root / "mixed_list.txt").write_text("\n".join(mixed) + "\n")  # demo.py style: with prefix
    (root / "identity_meta.csv").write_text(META)
    torch.manual_seed(0)
    model = facerec.create("backbone", "vggface2-resnet50").eval()
    arrays = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with open(root / "resnet50_ft_weight.pkl", "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    return root, model


@pytest.fixture
def ijb(tmp_path):
    """A tiny IJB-B folder in insightface's layout: 4 faces (random pixels, landmarks of the ArcFace
    template shifted), one template each, two genuine and two impostor pairs."""
    from facerec.data.align import ARCFACE_112

    root = tmp_path / "IJBB"
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    rng = np.random.default_rng(1)
    tid_mid, lms = [], []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (150, 140, 3), dtype=np.uint8)).save(root / "loose_crop" / f"{i}.jpg")
        pts = ARCFACE_112 + 10 + i
        lms.append(f"{i}.jpg " + " ".join(f"{v:.2f}" for v in pts.ravel()) + " 0.9")
        tid_mid.append(f"{i}.jpg {i} {i}")
    (root / "meta" / "ijbb_face_tid_mid.txt").write_text("\n".join(tid_mid) + "\n")
    (root / "meta" / "ijbb_name_5pts_score.txt").write_text("\n".join(lms) + "\n")
    (root / "meta" / "ijbb_template_pair_label.txt").write_text("0 1 1\n0 2 0\n1 3 0\n2 3 1\n")
    return root
