"""One device check (facerec.params.check_device) behind every --device: recipes, extract, eval, generate,
data align and MTCNN all refuse the same bad values with the same one-line message."""

from __future__ import annotations

import pytest
import torch

from facerec.errors import ParameterError
from facerec.params import check_device


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"] if torch.cuda.is_available() else ["cpu"])
def test_accepts_usable_devices(device):
    assert check_device(device) == device


@pytest.mark.parametrize(
    ("device", "words"),
    [
        ("gpu", "--device 'gpu' is not a device (use cpu, cuda or cuda:N)"),
        ("mps", "--device 'mps': facerec runs on cpu, cuda or cuda:N"),
        ("cuda:x", "--device 'cuda:x' is not a device"),
        *([] if torch.cuda.is_available() else [("cuda", "--device cuda: CUDA is not available on this machine")]),
    ],
)
def test_refuses_with_one_line(device, words):
    with pytest.raises(ParameterError) as info:
        check_device(device)
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args",
    [
        ["--backbone", "small-cnn", "--device", "mps"],
        ["generate", "--generator", "synthetic", "--ids", "2", "--per-id", "2", "--device", "mps"],
    ],
)
def test_commands_share_the_check(tmp_path, run_facerun, args):
    proc = run_facerun(*args, "--out", str(tmp_path / "never"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--device 'mps': facerec runs on cpu, cuda or cuda:N")
    assert not (tmp_path / "never").exists()
