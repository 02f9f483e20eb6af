"""DDP on CPU with gloo through torchrun (2 processes) matches one process with the same global batch;
a Partial FC run started on 2 processes resumes in 1 (the class centres are re-sharded).

This file is also the worker script: ``torchrun --nproc_per_node 2 test_ddp.py OUT_DIR`` runs ``JOBS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from facerec.api import Backbone, InputSpec, TensorDataset
from facerec.engine import TrainConfig, module_state, train_classifier
from facerec.heads import ArcFaceHead, PartialFCHead

CLASSES = 7  # odd: the two shards of Partial FC differ in size


class MLPNet(Backbone):
    """No BatchNorm: per-process batch statistics would legitimately differ from one big batch."""

    input_spec = InputSpec(size=8)
    embedding_size = 10

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 32), nn.PReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


def build(head_kind: str):
    torch.manual_seed(7)
    backbone = MLPNet()
    if head_kind == "arcface":
        head = ArcFaceHead(10, CLASSES, s=16.0, m=0.3)
    else:
        head = PartialFCHead(10, CLASSES, sample_rate=1.0, margin="arcface", s=16.0, m=0.3)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.arange(56) % CLASSES, images=torch.rand(56, 3, 8, 8, generator=g))
    return backbone, head, data


def config(steps: int, stop: int | None = None) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=16,
        lr=0.2,
        momentum=0.9,
        weight_decay=5e-4,
        grad_clip=5.0,
        schedule="cosine",
        log_every=1,
        progress=False,
        stop_at=stop,
    )


def train(out: str, head_kind: str, steps: int, stop: int | None = None, resume: bool = False) -> None:
    backbone, head, data = build(head_kind)
    train_classifier(backbone, head, data, config(steps, stop), run_dir=out, augment=None, resume=resume or None)


def _torchrun(tmp: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp)
    if proc.returncode != 0 and all((tmp / f"done-rank{r}").is_file() for r in range(2)):
        # Both ranks finished every job and met at the final barrier; what failed is gloo's own teardown
        # (a rare SIGABRT, "terminate called without an active exception", seen once in CI, not reproduced
        # in 32 local runs, 20 of them under load).
        # The outputs are complete and are checked below exactly as after a clean exit.
        warnings.warn(f"torchrun exited {proc.returncode} after both ranks finished: {proc.stderr[-300:]}")
        return
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _assert_same(a: Path, b: Path) -> None:
    for name in ("backbone", "head"):
        sa = module_state(a / "checkpoints" / "train-last.safetensors", name)
        sb = module_state(b / "checkpoints" / "train-last.safetensors", name)
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], atol=2e-5, rtol=1e-4, msg=f"{name}.{key}")


#: the distributed jobs, all run by ONE torchrun launch (starting processes is the slow part)
JOBS = (("ddp-arcface", "arcface", 4, None), ("ddp-partial-fc", "partial-fc", 4, None), ("mixed", "partial-fc", 4, 2))


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    """The folder where one torchrun launch ran every job of JOBS."""
    out = tmp_path_factory.mktemp("ddp")
    _torchrun(out, str(out))
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Callable[[str], Path]:
    """head kind -> the same training in one process (run once per kind)."""
    root, made = tmp_path_factory.mktemp("single"), set()

    def run(head_kind: str) -> Path:
        out = root / head_kind
        if head_kind not in made:
            train(str(out), head_kind, 4)
            made.add(head_kind)
        return out

    return run


@pytest.mark.parametrize("head_kind", ["arcface", "partial-fc"])
def test_ddp_two_processes_match_one(ddp_runs, single_run, head_kind):
    multi = ddp_runs / f"ddp-{head_kind}"
    _assert_same(single_run(head_kind), multi)
    # the weights actually moved (the comparison is not between two untouched models)
    start = build(head_kind)[0].state_dict()
    trained = module_state(multi / "checkpoints" / "train-last.safetensors", "backbone")
    assert not torch.allclose(start["body.1.weight"], trained["body.1.weight"])


def test_partial_fc_started_on_two_processes_resumes_in_one(ddp_runs, single_run):
    """2 processes for 2 steps, then resume in ONE process (re-sharded centres) for 2 more."""
    mixed = ddp_runs / "mixed"
    train(str(mixed), "partial-fc", 4, resume=True)
    _assert_same(single_run("partial-fc"), mixed)


if __name__ == "__main__":  # torchrun worker
    base = Path(sys.argv[1])
    for name, kind, total, stop_at in JOBS:
        train(str(base / name), kind, total, stop_at)
    torch.distributed.barrier()  # both ranks are done before either tears its sockets down
    (base / f"done-rank{torch.distributed.get_rank()}").touch()
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter finalisation, where gloo's worker threads can still abort


def test_facerun_train_under_torchrun_claims_its_run_folder_once(tmp_path):
    """Every rank runs the same command line: only rank 0 claims --out, the others must not find its claim
    and refuse ("already holds a run")."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "facerec.cli",
        "train",
        "--backbone",
        "small-cnn",
        "--param",
        "backbone.image_size=32",
        "--param",
        "backbone.width=8",
        "--dataset",
        "synthetic",
        "--param",
        "dataset.num_ids=8",
        "--param",
        "dataset.image_size=32",
        "--out",
        str(out),
        "--steps",
        "2",
        "--batch-size",
        "8",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already holds a run" not in proc.stdout + proc.stderr
    assert (out / "checkpoints").is_dir() and (out / "metrics.json").is_file()
