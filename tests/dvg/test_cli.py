"""The main job through the real CLI, as a user runs it (tiny step counts so that it takes seconds)."""

from __future__ import annotations

import json
import re

import pytest
import torch

import facerec

TINY = [
    "--param",
    "train.steps=2",
    "--param",
    "recipe.batch_size=8",
    "--param",
    "recipe.sampler_steps=3",
    "--param",
    "recipe.generator_steps=2",
    "--param",
    "recipe.generator_batch=4",
    "--param",
    "recipe.num_pairs=12",
    "--param",
    "dataset.num_ids=8",
    "--param",
    "protocol.num_ids=8",
    "--param",
    "protocol.nir_per_id=2",
    "--param",
    "recipe.pretrain_ids=8",
    "--param",
    "recipe.pretrain_per_id=2",
]


def test_main_job_lightcnn29_dvg(run_facerun, tmp_path):
    out = tmp_path / "run"
    proc = run_facerun("--backbone", "lightcnn29", "--generator", "dvg", "--out", str(out), *TINY)
    assert (
        re.search(r"\n  with generated pairs +rank-1 ", proc.stdout)
        and "with/synthetic-nir-vis/rank1" not in proc.stdout
    )
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
    run_facerun(
        "--backbone",
        "small-cnn",
        "--generator",
        "dvg-neurips",
        "--out",
        str(out),
        *TINY,
        "--param",
        "backbone.image_size=32",
        "--param",
        "generator.hdim=16",
        "--param",
        "recipe.write_generated=list",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert "with/synthetic-nir-vis/rank1" in metrics and "generator/mmd" in metrics
    assert "identity-check/generated/same-cos" in metrics
    assert len((out / "generated" / "list.txt").read_text().splitlines()) == 24


@pytest.mark.parametrize(
    "param,message",
    [
        (
            "recipe.write_generated=zip",
            "--param recipe.write_generated (recipe dvg) must be one of 'lmdb', 'folder', "
            "'list', 'none' or none, got 'zip'",
        ),
        (
            "recipe.stage3_steps=5",
            "--param recipe.stage3_steps: recipe 'dvg' has no parameter 'stage3_steps' "
            "(did you mean stage2_steps, stage1_steps",
        ),
        ("recipe.num_pairs=0", "--param recipe.num_pairs (recipe dvg) must be >= 1, got 0"),
        ("recipe.nuisance=wild", "recipe.nuisance: unknown nuisance preset 'wild'"),
    ],
)
def test_bad_recipe_options_are_one_line_errors(run_facerun, tmp_path, param, message):
    proc = run_facerun(
        "--backbone", "lightcnn29", "--generator", "dvg", "--out", str(tmp_path / "r"), "--param", param, check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before any work


#: the knobs' defaults per preset as the dict-knob recipe had them (facerec_dvg before its params class)
QUICK = {
    "pretrained": None,
    "pretrain_ids": 300,
    "pretrain_per_id": 20,
    "pretrain_steps": 900,
    "pretrain_lr": 2e-3,
    "pretrain_head": "norm-softmax",
    "sampler_steps": 200,
    "generator_steps": 350,
    "generator_batch": 8,
    "num_pairs": 512,
    "batch_size": 32,
    "stage1_steps": 100,
    "stage2_steps": 100,
    "finetune_lr": 1e-3,
    "contrastive_weight": 1.0,
    "seeds": 1,
    "write_generated": "lmdb",
    "nuisance": "controlled",
}
PAPER = {
    **QUICK,
    "pretrain_ids": 10000,
    "pretrain_steps": 20000,
    "pretrain_lr": 1e-3,
    "pretrain_head": None,
    "sampler_steps": 20000,
    "generator_steps": 60000,
    "num_pairs": 100000,
    "batch_size": 64,
    "stage1_steps": 4000,
    "stage2_steps": 24000,
    "contrastive_weight": 0.001,
    "nuisance": "default",
}


def test_info_recipe_dvg_lists_knobs_with_quick_and_paper_defaults(run_facerun):
    data = json.loads(run_facerun("info", "recipe", "dvg", "--json").stdout)
    params = data["parameters"]
    assert {k: p["quick"] for k, p in params.items()} == QUICK
    assert {k: p["paper"] for k, p in params.items()} == PAPER
    assert params["sampler_steps"]["range"] == ">= 0" and params["seeds"]["type"] == "an integer"
    assert data["defaults"] == {
        "head": "lightcnn-fc2",
        "dataset": "synthetic-nir-vis",
        "protocols": ["synthetic-nir-vis"],
    }
    text = run_facerun("info", "recipe", "dvg").stdout
    assert "num_pairs: quick 512, paper 100000 (an integer; >= 1)  generated NIR/VIS pairs" in text
    assert "pretrain_head: quick 'norm-softmax', paper None (a string or none)" in text
    assert "generator_batch: default 8 (an integer; >= 1)" in text
    assert "falls back to: head lightcnn-fc2, dataset synthetic-nir-vis, protocols synthetic-nir-vis" in text


def test_dvg_recipe_needs_paired_modalities(run_facerun, tmp_path):
    proc = run_facerun(
        "--backbone",
        "lightcnn29",
        "--generator",
        "dvg",
        "--dataset",
        "synthetic",
        "--out",
        str(tmp_path / "r"),
        *TINY,
        check=False,
    )
    assert proc.returncode != 0 and "modality" in proc.stderr and "Traceback" not in proc.stderr


def test_describe_components():
    info = facerec.describe("backbone", "lightcnn29")
    assert info["embedding_size"] == 256 and info["input_spec"]["color"] == "GRAY"
    assert facerec.load("recipe", "dvg").params().num_pairs > 0
    assert torch.is_tensor(facerec.create("head", "lightcnn-fc2", embedding_size=8, num_classes=3).weight)


def test_weights_convert_released_lightcnn_layout(run_facerun, tmp_path, parity_dir):
    """`facerun weights convert` on a checkpoint in the released layout (module. keys, fc2 classifier)."""
    from facerec.testing import load_fixture

    state = load_fixture("dvgface.lightcnn29v2", parity_dir).state_dict()
    state.pop("fc2_.weight")
    state["fc2.weight"] = torch.zeros(50, 256)  # upstream name (80013 classes in the real file)
    original = tmp_path / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    torch.save(
        {
            "epoch": 80,
            "arch": "LightCNN-29v2",
            "prec1": 0.0,
            "state_dict": {"module." + k: v for k, v in state.items()},
        },
        original,
    )
    out = tmp_path / "lightcnn29.safetensors"
    run_facerun("weights", "convert", str(original), "--arch", "lightcnn29", "--to", str(out))
    model = facerec.create("backbone", "lightcnn29")
    facerec.load_weights(model, out)
    assert torch.equal(model.state_dict()["conv1.filter.weight"], state["conv1.filter.weight"])
    # a prefix mismatch is an error, never a silent partial load
    torch.save({"state_dict": {"features." + k: v for k, v in state.items()}}, original)
    proc = run_facerun("weights", "convert", str(original), "--arch", "lightcnn29", "--to", str(out), check=False)
    assert proc.returncode != 0 and "missing" in proc.stderr and "Traceback" not in proc.stderr
