"""The three modes of the original demo.py through the real CLI: extract, test, train; and .pkl conversion."""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from facerec_vggface2.data import VGGFace2List


def test_convert_pkl_to_safetensors(vgg, run_facerun):
    root, model = vgg
    out = root / "resnet50_ft.safetensors"
    run_facerun(
        "weights", "convert", str(root / "resnet50_ft_weight.pkl"), "--arch", "vggface2-resnet50", "--to", str(out)
    )
    state = load_file(str(out))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    bad = run_facerun(
        "weights",
        "convert",
        str(root / "resnet50_ft_weight.pkl"),
        "--arch",
        "vggface2-senet50",
        "--to",
        str(root / "x.safetensors"),
        check=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "SE-ResNet-50" in bad.stderr


def test_extract_flip_l2_one_file(vgg, run_facerun):
    root, model = vgg
    out = root / "features.safetensors"
    run_facerun(
        "vggface2",
        "extract",
        "--arch",
        "resnet50_ft",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(root / "train_list.txt"),
        "--out",
        str(out),
        "--flip",
        "--l2",
        "--batch-size",
        "4",
    )
    feats = load_file(str(out))
    assert feats["features"].shape == (6, 2048)
    assert torch.allclose(feats["features"].norm(dim=1), torch.ones(6), atol=1e-5)
    with safe_open(str(out), framework="pt") as f:
        paths = json.loads(f.metadata()["paths"])
    assert paths[0] == "n000002/0000_01.jpg"
    data = VGGFace2List(str(root), str(root / "train_list.txt"))
    with torch.no_grad():
        x = model.input_spec.prepare(data[3]["image"][None])
        want = torch.nn.functional.normalize((model(x) + model(x.flip(-1))) / 2, dim=1)
    assert torch.allclose(feats["features"][3], want[0], atol=1e-4)


def test_test_reports_test_split_identities(vgg, run_facerun):
    root, _ = vgg
    out = root / "test.json"
    proc = run_facerun(
        "vggface2",
        "test",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(root / "mixed_list.txt"),
        "--meta",
        str(root / "identity_meta.csv"),
        "--out",
        str(out),
    )
    res = json.loads(out.read_text())
    # the random 8631-way classifier sees 2 training-identity images; the test-split ones are reported
    assert res["images"] == 2 and res["skipped_test_split_images"] == 2
    assert res["skipped_test_split_identities"] == 1 and 0.0 <= res["top1"] <= res["top5"] <= 1.0
    assert "skipped 2 images of 1 test-split identities" in proc.stdout
    missing = run_facerun("vggface2", "test", "--root", str(root), "--list", str(root / "mixed_list.txt"), check=False)
    assert missing.returncode != 0 and "needs --meta" in missing.stderr and "Traceback" not in missing.stderr


def test_train_classifier_only_keeps_backbone_and_bn_stats(vgg, run_facerun):
    root, model = vgg
    run = root / "run"
    proc = run_facerun(
        "vggface2",
        "train",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(root / "train_list.txt"),
        "--meta",
        str(root / "identity_meta.csv"),
        "--mode",
        "fc",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--out",
        str(run),
    )
    assert "step 3/3" in proc.stdout
    state = load_file(str(run / "model.safetensors"))
    assert state["fc.weight"].shape == (3, 2048)  # the three Flag=1 identities
    ref = model.state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref if not k.startswith("fc."))  # no BN drift
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and np.isfinite(metrics["loss"])
    # the same --out again: refused in one line (issue 23), the run untouched
    again = run_facerun(
        "vggface2",
        "train",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(root / "train_list.txt"),
        "--meta",
        str(root / "identity_meta.csv"),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--out",
        str(run),
        check=False,
    )
    assert again.returncode != 0 and "Traceback" not in again.stderr and "--overwrite" in again.stderr
    assert json.loads((run / "metrics.json").read_text()) == metrics
    # the trained model (3-way classifier) is what `test` then loads
    res = run_facerun(
        "vggface2",
        "test",
        "--weights",
        str(run / "model.safetensors"),
        "--root",
        str(root),
        "--list",
        str(root / "mixed_list.txt"),
        "--meta",
        str(root / "identity_meta.csv"),
    )
    assert "top1" in res.stdout


def test_bad_arch_is_one_line(vgg, run_facerun):
    root, _ = vgg
    proc = run_facerun(
        "vggface2",
        "extract",
        "--arch",
        "vgg16",
        "--root",
        str(root),
        "--list",
        str(root / "train_list.txt"),
        "--out",
        str(root / "f.safetensors"),
        check=False,
    )
    assert proc.returncode != 0 and "unknown --arch 'vgg16'" in proc.stderr and "Traceback" not in proc.stderr
