"""Issue 24 items 9 and 10: IJB evaluation with a VGGFace2 backbone by default, `vggface2 train` resume,
`vggface2 test` JSON without NaN, and the original's flipped-only features (`--flipped`)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from facerec_vggface2.data import VGGFace2List


def _strict_json(text: str):
    def refuse(name: str):
        raise AssertionError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def test_ijb_eval_with_vggface2_backbone(vgg, ijb, run_facerun):
    """`facerun eval --protocol ijb` aligns each face to the backbone's own template (it used to fail with
    "unknown alignment template 'vggface2-loose'")."""
    root, _ = vgg
    proc = run_facerun(
        "eval",
        "--backbone",
        "vggface2-resnet50",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--protocol",
        "ijb",
        "--data",
        str(ijb),
        "--batch-size",
        "4",
        "--json",
        "-q",
    )
    metrics = _strict_json(proc.stdout)
    assert metrics["n_templates"] == 4 and metrics["n_pairs"] == 4


def _train(root, run, steps, *extra):
    return (
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
        str(steps),
        "--batch-size",
        "2",
        "--out",
        str(run),
        *extra,
    )


def test_train_resumes_exactly(vgg, tmp_path, run_facerun):
    root, _ = vgg
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_facerun(*_train(root, straight, 4))
    run_facerun(*_train(root, resumed, 2))
    proc = run_facerun(*_train(root, resumed, 4, "--resume"))
    assert "resumed at step 2" in proc.stdout
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    ref = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [r["loss"] for r in ref]
    assert _strict_json((resumed / "metrics.json").read_text())["steps"] == 4
    # resuming a folder without a checkpoint, or with another mode, is a one-line error
    bad = run_facerun(*_train(root, tmp_path / "none", 4, "--resume"), check=False)
    assert bad.returncode != 0 and "no checkpoint" in bad.stderr and "Traceback" not in bad.stderr
    other = run_facerun(*[a if a != "fc" else "full" for a in _train(root, resumed, 5, "--resume")], check=False)
    assert other.returncode != 0 and "--mode" in other.stderr and "Traceback" not in other.stderr


def test_test_json_has_no_nan_when_every_identity_is_skipped(vgg, run_facerun):
    root, _ = vgg
    only_test = root / "only_test_list.txt"
    only_test.write_text("test/n000001/0000_01.jpg\ntest/n000001/0001_01.jpg\n")
    out = root / "only_test.json"
    proc = run_facerun(
        "vggface2",
        "test",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(only_test),
        "--meta",
        str(root / "identity_meta.csv"),
        "--out",
        str(out),
    )
    res = _strict_json(out.read_text())
    assert res["images"] == 0 and res["top1"] is None and res["top5"] is None and res["loss"] is None
    assert res["skipped_test_split_images"] == 2 and res["skipped_test_split_identities"] == 1
    assert "no image of a training identity" in proc.stdout


def test_extract_flipped_only_as_the_original(vgg, run_facerun):
    """The original's --horizontal_flip gives the features of the mirrored images alone; --flip averages."""
    root, model = vgg
    out = root / "flipped.safetensors"
    run_facerun(
        "vggface2",
        "extract",
        "--weights",
        str(root / "resnet50_ft_weight.pkl"),
        "--root",
        str(root),
        "--list",
        str(root / "train_list.txt"),
        "--out",
        str(out),
        "--horizontal-flip",
        "--batch-size",
        "6",
    )
    feats = load_file(str(out))["features"]
    data = VGGFace2List(str(root), str(root / "train_list.txt"))
    with torch.no_grad():
        x = model.input_spec.prepare(torch.stack([data[i]["image"] for i in (0, 5)]))
        want = model(x.flip(-1))
    assert torch.allclose(feats[[0, 5]], want, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(feats[[0, 5]], model(x), atol=1e-2)
