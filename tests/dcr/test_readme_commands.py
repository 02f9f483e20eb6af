"""Every facerun command of facerec_dcr/README.md's "How to do what the original does" tables, run on a tiny
data root in the original's layout (the README placeholders replaced, tiny sizes and 2 steps added)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "facerec_dcr" / "README.md"
TINY = ["--param", "backbone.layers=(1,1,1,1)", "--param", "backbone.image_size=32"]


def test_readme_commands_run(dcr_root, tmp_path, readme, save_original):
    from facerec_dcr.model import DCR

    commands = readme.commands(README)
    assert len(commands) == 8
    torch.manual_seed(0)
    ckpt = save_original(DCR(num_classes=20, layers=(1, 1, 1, 1)).state_dict(), ddp=True)  # a DDP-trained file
    subst = {"ROOT": str(dcr_root), "model_best.pth.tar": str(ckpt)}
    train = [*TINY, "--param", "train.steps=2", "--param", "train.batch_size=8"]
    done = readme.run(
        commands,
        subst,
        cwd=tmp_path,
        extra={
            "facerun train": train,
            "facerun eval": [*TINY, "--param", "backbone.num_classes=20", "--image-size", "32", "-q"],
        },
    )
    assert json.loads((tmp_path / "RUN" / "metrics.json").read_text())["branch"]
    assert "re-initialised for 130 classes" in (tmp_path / "RUN_SC" / "summary.md").read_text()
    assert any("precision_at_1_hr" in p.stdout for p in done.values())  # task IR
    # every --param fragment of the options table is exercised by one of the commands run above
    text = README.read_text()
    options = text[text.index("Each option of `config.py`") : text.index("Recipe knobs")]
    ran = " ".join(commands).replace('"', "")
    for fragment in re.findall(r"`(--param [^`|]+?)`", options):
        key = fragment.replace('"', "").split("=")[0]
        assert key in ran, fragment
