"""Every facerun command of facerec_dvg/README.md's "How to do what the original does" table, run on a few
synthetic NIR-VIS faces written as a CASIA-like list, with tiny networks (file names replaced, tiny sizes and
step counts added)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import facerec
from facerec.weights import save_weights

from facerec_dvg.dvgface import DVGFace
from facerec_dvg.lightcnn import LightCNN29

from .test_cli import TINY
from .test_generator_command import nir_vis  # noqa: F401  (the fixture)

README = Path(__file__).resolve().parents[2] / "facerec_dvg" / "README.md"


def _original(module, path):
    torch.save({"epoch": 5, "state_dict": {f"module.{k}": v for k, v in module.state_dict().items()}}, path)
    return str(path)


def test_readme_commands_run(tmp_path, readme, run_facerun, nir_vis):  # noqa: F811
    root, lst, _ = nir_vis
    torch.manual_seed(0)
    face = LightCNN29(**LightCNN29.quick_params)  # the quick preset's face model: the recipe loads it too
    save_weights(face, tmp_path / "face.safetensors")
    gen = DVGFace(image_size=16, width=0.125)
    subst = {
        "NIR-VIS-2.0": str(root),
        "train_list.txt": str(lst),
        "LightCNN_29Layers_V2_checkpoint.pth.tar": str(tmp_path / "face.safetensors"),
        "dec_epoch_45.pth.tar": _original(gen.identity_sampler, tmp_path / "dec.pth"),
        "encoder_nir_epoch_5.pth.tar": _original(gen.encoder_nir, tmp_path / "enc_nir.pth"),
        "encoder_vis_epoch_5.pth.tar": _original(gen.encoder_vis, tmp_path / "enc_vis.pth"),
        "decoder_epoch_5.pth.tar": _original(gen.decoder, tmp_path / "dec_net.pth"),
        "100000": "3",
        "2000": "2",
        "8": "2",
        "paper": "quick",
    }
    commands = readme.commands(README)
    assert len(commands) == 6
    face_params = [a for k, v in LightCNN29.quick_params.items() for a in ("--face-param", f"{k}={v}")]
    small = ["--image-size", "16", "--width", "0.125"]
    readme.run(
        commands,
        subst,
        cwd=tmp_path,
        small={"--epochs": "0.1"},
        env={"OMP_NUM_THREADS": "1"},
        extra={
            "facerun dvg train-generator": [*face_params, *small, "--param", "num_attributes=4"],
            "facerun dvg convert": small,
            "facerun train": [
                a for pair in zip(TINY[::2], TINY[1::2]) if not pair[1].startswith("dataset.") for a in pair
            ],
        },
    )  # the list is the data: no synthetic dataset sizes
    for folder in ("gen_images", "gen_images_epoch_5"):
        back = facerec.create("dataset", "image-folder", root=str(tmp_path / folder), modality_rule=r"_(NIR|VIS)\.")
        assert len(back) == 6 and back.modality.tolist().count(1) == 3
    assert json.loads((tmp_path / "dvg_generator" / "metrics.json").read_text())["settings"][
        "identity_sampler"
    ].endswith("dec.pth")
    metrics = json.loads((tmp_path / "dvg_run" / "metrics.json").read_text())
    assert (
        metrics["generator/identity_sampler"].startswith("released, frozen")
        and "with/synthetic-nir-vis/rank1" in metrics
    )
