"""The main job through the real CLI, as a user runs it (tiny step counts so that it takes seconds)."""

from __future__ import annotations

import json
import re

import pytest
import torch

import facerec

TINY = ["--param", "train.steps=2", "--param", "recipe.batch_size=8", "--param", "recipe.sampler_steps=3",
        "--param", "recipe.generator_steps=2", "--param", "recipe.generator_batch=4", "--param", "recipe.num_pairs=12",
        "--param", "dataset.num_ids=8", "--param", "protocol.num_ids=8", "--param", "protocol.nir_per_id=2",
        "--param", "recipe.pretrain_ids=8", "--param", "recipe.pretrain_per_id=2"]


def test_main_job_lightcnn29_dvg(run_facerun, tmp_path):
    out = tmp_path / "run"
    proc = run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--out", str(out), *TINY)
    assert re.search(r"\n  with generated pairs +rank-1 ", proc.stdout) and "with/synthetic-nir-vis/rank1" not in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for arm in ("with", "without"):
        for key in ("rank1", "vr@far=1e-2", "vr@far=1e-3"):
            assert 0.0 <= metrics[f"{arm}/synthetic-nir-vis/{key}"] <= 1.0
    assert metrics["generated/pairs"] == 12 and "generator/pix" in metrics and "generator/sampler_rec" in metrics
    assert json.loads((out / "config.json").read_text())["recipe"] == "dvg"
    table = (out / "summary.md").read_text().split("## Comparison")[1]
    assert "| with generated pairs |" in table and "| without generated pairs |" in table and "| chance |" in table
    for picture in ("generated_pairs.png", "roc.png", "cmc.png"):
        assert (out / "pictures" / picture).stat().st_size > 1000
    # generated pairs in LMDB: NIR and VIS image of each new identity, readable by core's reader
    data = facerec.create("dataset", "lmdb", path=str(out / "generated.lmdb"))
    assert len(data) == 24 and sorted(data.labels.tolist()) == sorted(list(range(12)) * 2)
    assert data.batch([0])["image"].shape[-1] == 64  # the quick preset's generator draws 64 px pairs
    # the trained generator and every backbone load strictly
    gen = facerec.create("generator", "dvg", image_size=64, width=0.25)
    facerec.load_weights(gen, out / "generator.safetensors")
    assert int(gen.attributes_count) > 0
    backbone = facerec.create("backbone", "lightcnn29", image_size=32, width=0.25, batchnorm=True)
    for arm in ("face-model", "without", "with"):
        facerec.load_weights(backbone, out / f"backbone-{arm}.safetensors")
    log = [json.loads(line) for line in (out / "generator_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]


def test_other_backbone_and_dvg_neurips(run_facerun, tmp_path):
    out = tmp_path / "run"
    run_facerun("--backbone", "small-cnn", "--generator", "dvg-neurips", "--out", str(out), *TINY,
                "--param", "backbone.image_size=32", "--param", "generator.hdim=16",
                "--param", "recipe.write_generated=list")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "with/synthetic-nir-vis/rank1" in metrics and "generator/mmd" in metrics
    assert "identity-check/generated/same-cos" in metrics
    assert len((out / "generated" / "list.txt").read_text().splitlines()) == 24


@pytest.mark.parametrize("param,message", [
    ("recipe.write_generated=zip", "recipe.write_generated must be lmdb, folder, list or none"),
    ("recipe.stage3_steps=5", "no knob recipe.stage3_steps"),
    ("recipe.num_pairs=0", "recipe.num_pairs must be a positive integer"),
])
def test_bad_recipe_options_are_one_line_errors(run_facerun, tmp_path, param, message):
    proc = run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--out", str(tmp_path / "r"),
                       "--param", param, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_dvg_recipe_needs_paired_modalities(run_facerun, tmp_path):
    proc = run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--dataset", "synthetic", "--out",
                       str(tmp_path / "r"), *TINY, check=False)
    assert proc.returncode != 0 and "modality" in proc.stderr and "Traceback" not in proc.stderr


def test_describe_components():
    info = facerec.describe("backbone", "lightcnn29")
    assert info["embedding_size"] == 256 and info["input_spec"]["color"] == "GRAY"
    assert facerec.load("recipe", "dvg").params["num_pairs"] > 0
    assert torch.is_tensor(facerec.create("head", "lightcnn-fc2", embedding_size=8, num_classes=3).weight)


def test_weights_convert_released_lightcnn_layout(run_facerun, tmp_path, parity_dir):
    """`facerun weights convert` on a checkpoint in the released layout (module. keys, fc2 classifier)."""
    from facerec.testing import load_fixture

    state = load_fixture("dvgface.lightcnn29v2", parity_dir).state_dict()
    state.pop("fc2_.weight")
    state["fc2.weight"] = torch.zeros(50, 256)  # upstream name (80013 classes in the real file)
    original = tmp_path / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    torch.save({"epoch": 80, "arch": "LightCNN-29v2", "prec1": 0.0,
                "state_dict": {"module." + k: v for k, v in state.items()}}, original)
    out = tmp_path / "lightcnn29.safetensors"
    run_facerun("weights", "convert", str(original), "--arch", "lightcnn29", "--to", str(out))
    model = facerec.create("backbone", "lightcnn29")
    facerec.load_weights(model, out)
    assert torch.equal(model.state_dict()["conv1.filter.weight"], state["conv1.filter.weight"])
    # a prefix mismatch is an error, never a silent partial load
    torch.save({"state_dict": {"features." + k: v for k, v in state.items()}}, original)
    proc = run_facerun("weights", "convert", str(original), "--arch", "lightcnn29", "--to", str(out), check=False)
    assert proc.returncode != 0 and "missing" in proc.stderr and "Traceback" not in proc.stderr
