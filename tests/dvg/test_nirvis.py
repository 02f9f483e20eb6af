"""NIR-VIS lists, the DVG evaluation through core's compat mode, and the CASIA NIR-VIS 2.0 ten-fold protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facerec.errors import DataError, ParameterError
from facerec.testing import load_fixture
from PIL import Image

import facerec
from facerec_dvg.nirvis import CasiaNirVis, NirVisList, dvg_metrics


@pytest.mark.parametrize("name", ["dvg.eval_1n_11", "dvg.eval_1n_11_open"])
def test_plugin_evaluation_reproduces_dvg_fixture(parity_dir, name):
    fx = load_fixture(name, parity_dir)
    inp = fx.inputs()
    metrics, art = dvg_metrics(
        inp["gallery"], inp["gallery_labels"], inp["probe"], inp["probe_labels"], fars=(1e-2, 1e-3, 1e-4, 1e-5, 0.0)
    )
    fx.check("rank", torch.tensor([metrics[f"rank{k}"] for k in (1, 3, 5, 10, 20)], dtype=torch.float32))
    fx.check(
        "tpr_at_far",
        torch.tensor([metrics[f"vr@far={t:.0e}"] for t in (1e-2, 1e-3, 1e-4, 1e-5, 0.0)], dtype=torch.float64),
    )
    fx.check("ap", torch.tensor(metrics["ap"], dtype=torch.float64))
    fx.check("eer_raw", torch.tensor(metrics["eer"], dtype=torch.float64))
    assert len(art["roc_fpr"]) == len(art["roc_tpr"]) > 2


def _write_faces(root, rel_paths, labels):
    for rel, label in zip(rel_paths, labels):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # Identity = a colour; NIR images are its gray version: an identity embedder maps both alike.
        rng = np.random.default_rng(label)
        m, a = int(rng.integers(40, 215)), int(rng.integers(0, 30))
        colour = np.array([m + a, m - a, m])  # mean exactly m: the NIR version is the gray level m
        if "NIR" in rel.split("/")[-2]:
            colour = np.full(3, m)
        Image.fromarray(np.broadcast_to(colour.astype(np.uint8), (16, 16, 3)).copy()).save(path)


def test_nir_vis_list_modality_rules(tmp_path):
    rels = ["NIR-VIS-2.0/NIR/s2_NIR_10039_001.png", "NIR-VIS-2.0/VIS/s1_VIS_00134_010.png", "NIR/s1_NIR_00118_011.png"]
    _write_faces(tmp_path, rels, [1, 1, 2])
    (tmp_path / "list.txt").write_text("".join(f"{r} {lab}\n" for r, lab in zip(rels, [1, 1, 2])))
    data = NirVisList(tmp_path / "list.txt", image_size=16)
    # the original's substring test calls NIR-VIS-2.0/VIS/... NIR; the last occurrence decides here
    assert data.modality.tolist() == [1, 0, 1]
    assert data.labels.tolist() == [1, 1, 2] and data[1]["image"].shape == (3, 16, 16)
    (tmp_path / "dvg.txt").write_text("".join(f"{r} {lab} {d}\n" for r, lab, d in zip(rels, [1, 1, 2], [0, 1, 0])))
    assert NirVisList(tmp_path / "dvg.txt", layout="dvg").modality.tolist() == [1, 0, 1]
    with pytest.raises(ParameterError, match="layout"):
        NirVisList(tmp_path / "list.txt", layout="casia")
    assert facerec.create("dataset", "nir-vis-list", path=str(tmp_path / "list.txt")).num_classes == 3


def test_casia_protocol_ten_folds(tmp_path):
    lists = tmp_path / "protocols"
    lists.mkdir()
    for fold in (1, 2):
        ids = [10000 + 10 * fold + i for i in range(5)]
        gallery = [f"s1/VIS/{i}/001.png" for i in ids]
        probe = [f"s2/NIR/{i}/{k:03d}.png" for i in ids for k in (1, 2)]
        _write_faces(tmp_path, gallery, ids)
        _write_faces(tmp_path, probe, [i for i in ids for _ in (1, 2)])
        # fold 1 in DVG's `path label` form, fold 2 as official path-only lists (identity = parent folder)
        if fold == 1:
            (lists / "NIR_VIS_gallery1.txt").write_text("".join(f"{g} {i}\n" for g, i in zip(gallery, ids)))
            (lists / "NIR_VIS_probe1.txt").write_text("".join(f"{p} {int(p.split('/')[2])}\n" for p in probe))
        else:
            (lists / "NIR_VIS_gallery2.txt").write_text("".join(g.replace("/", "\\") + "\n" for g in gallery))
            (lists / "NIR_VIS_probe2.txt").write_text("".join(p + "\n" for p in probe))
    proto = facerec.create("protocol", "casia-nir-vis", data=str(tmp_path))

    def perfect(images):  # one-hot of the gray level: NIR = gray of the VIS colour, same mean level
        level = (images.mean(dim=(1, 2, 3)) * 255).round().long()
        return torch.nn.functional.one_hot(level, 256).float()

    good = proto.evaluate(perfect)
    assert good.metrics["rank1"] == pytest.approx(1.0) and good.metrics["n_folds"] == 2
    assert {"rank3", "rank20", "vr@far=0.01", "vr@far=0.001", "rank1_std"} <= set(good.metrics)
    assert good.metrics["vr@far=0.01"] == pytest.approx(1.0)
    with pytest.raises(DataError, match="no gallery/probe lists"):
        CasiaNirVis(data=str(tmp_path / "s1"))
