"""`facerun dvg train-generator` (the original train_generator.py) and `facerun dvg convert` (its epoch
checkpoints), and `facerun generate --weights` from every generator file they and the recipe write, with no
build parameter repeated by hand."""

from __future__ import annotations

import json

import pytest
import torch

import facerec
from facerec.data.decode import encode_jpeg
from facerec.weights import save_weights

from facerec_dvg.dvgface import DVGFace
from facerec_dvg.lightcnn import LightCNN29

SMALL = ["--image-size", "16", "--width", "0.125", "--param", "num_attributes=4"]
FACE = ["--face-param", "image_size=16", "--face-param", "width=0.125"]


@pytest.fixture
def nir_vis(tmp_path):
    """A CASIA-like list: NIR/ and VIS/ folders, `path label` lines (the original's layout), 4 identities."""
    data = facerec.create("dataset", "synthetic-nir-vis", num_ids=4, image_size=16)
    root = tmp_path / "faces"
    lines = []
    batch = data.batch(list(range(len(data))))
    for i, (image, label, modality) in enumerate(zip(batch["image"], batch["label"], batch["modality"])):
        mod = "NIR" if int(modality) == 1 else "VIS"
        rel = f"{mod}/s1_{mod}_{int(label):05d}_{i:03d}.jpg"
        (root / mod).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode_jpeg((torch.as_tensor(image).clamp(0, 1) * 255).round().to(torch.uint8), 95))
        lines.append(f"{rel} {int(label)}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    save_weights(LightCNN29(image_size=16, width=0.125), tmp_path / "face.safetensors")
    return root, tmp_path / "train.txt", tmp_path / "face.safetensors"


def _generate(run_facerun, weights, out, *extra, check=True):
    return run_facerun(
        "generate",
        "--generator",
        "dvg",
        "--weights",
        str(weights),
        "--ids",
        "3",
        "--per-id",
        "2",
        "--out",
        str(out),
        "-q",
        *extra,
        check=check,
    )


def test_train_generator_resumes_and_its_files_generate(run_facerun, tmp_path, nir_vis):
    root, lst, face = nir_vis
    out = tmp_path / "run"
    args = [
        "dvg",
        "train-generator",
        "--img-root",
        str(root),
        "--train-list",
        str(lst),
        "--face-weights",
        str(face),
        *FACE,
        *SMALL,
        "--sampler-steps",
        "2",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--out",
        str(out),
    ]
    proc = run_facerun(*args, "--stop-at", "2", check=False)
    assert proc.returncode != 0 and "stage 'generator' stopped at step 2 of 3 (--stop-at)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "generator.safetensors").exists()
    proc = run_facerun(*args, "--resume")
    assert "facerun generate --generator dvg --weights" in proc.stdout
    log = [json.loads(line) for line in (out / "generator_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    lines = len(lst.read_text().splitlines())
    assert (
        metrics["settings"]["paired_images"] == metrics["settings"]["images"] == lines
        and "sampler_rec" in metrics
        and "pix" in metrics
    )
    # the file carries its build parameters: generate needs no --param (image size, width, codes)
    _generate(run_facerun, out / "generator.safetensors", tmp_path / "gen", "--format", "folder")
    back = facerec.create("dataset", "image-folder", root=str(tmp_path / "gen"), modality_rule=r"_(NIR|VIS)\.")
    assert (
        len(back) == 6
        and back.batch([0])["image"].shape[-1] == 16
        and sorted(back.modality.tolist()) == [0] * 3 + [1] * 3
    )
    # ... and so does its training checkpoint (keys under model/generator/)
    _generate(run_facerun, out / "checkpoints" / "generator-last.safetensors", tmp_path / "ck.lmdb")
    assert len(facerec.create("dataset", "lmdb", path=str(tmp_path / "ck.lmdb"))) == 6
    # a file of another generator is named as such, in one line
    proc = run_facerun(
        "generate",
        "--generator",
        "dvg-neurips",
        "--weights",
        str(out / "generator.safetensors"),
        "--ids",
        "2",
        "--per-id",
        "2",
        "--out",
        str(tmp_path / "x.lmdb"),
        check=False,
    )
    assert proc.returncode != 0 and "holds a 'dvg' generator, not 'dvg-neurips'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_convert_original_checkpoints_then_generate(run_facerun, tmp_path, nir_vis):
    root, lst, _ = nir_vis
    torch.manual_seed(3)
    gen = DVGFace(image_size=16, width=0.125)
    files = {}
    for name, module in (("encoder_nir", gen.encoder_nir), ("encoder_vis", gen.encoder_vis), ("decoder", gen.decoder)):
        files[name] = tmp_path / f"{name}_epoch_5.pth.tar"  # the original's container, DataParallel keys
        torch.save({"epoch": 5, "state_dict": {f"module.{k}": v for k, v in module.state_dict().items()}}, files[name])
    files["sampler"] = tmp_path / "dec_epoch_45.pth.tar"
    torch.save(
        {"epoch": 45, "state_dict": {f"module.{k}": v for k, v in gen.identity_sampler.state_dict().items()}},
        files["sampler"],
    )
    out = tmp_path / "dvg_epoch_5.safetensors"
    run_facerun(
        "dvg",
        "convert",
        "--encoder-nir",
        str(files["encoder_nir"]),
        "--encoder-vis",
        str(files["encoder_vis"]),
        "--decoder",
        str(files["decoder"]),
        "--identity-sampler",
        str(files["sampler"]),
        "--img-root",
        str(root),
        "--train-list",
        str(lst),
        "--image-size",
        "16",
        "--width",
        "0.125",
        "--out",
        str(out),
    )
    loaded = facerec.weights.model_from_weights(out)
    ref = gen.state_dict()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ref.items() if not k.startswith("attributes"))
    assert int(loaded.attributes_count) == 256
    _generate(run_facerun, out, tmp_path / "g.lmdb")
    data = facerec.create("dataset", "lmdb", path=str(tmp_path / "g.lmdb"))
    assert len(data) == 6 and data.modality.tolist().count(1) == 3
