"""Exact resume: N steps straight == N/2 steps, stop, resume from the safetensors checkpoint, N/2 more."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facerec.api import Backbone, InputSpec, TensorDataset
from facerec.engine import TrainConfig, Trainer, module_state, train_classifier
from facerec.engine.checkpoint import CheckpointError, read_metadata
from facerec.errors import FacerecError
from facerec.heads import ArcFaceHead, PartialFCHead


class TinyNet(Backbone):
    """Conv + BN + dropout: exercises buffers (running stats) and the RNG in resume."""

    input_spec = InputSpec(size=16, mean=0.5, std=0.5)
    embedding_size = 12

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32, 12),
        )

    def forward(self, x):
        return self.body(x)


def _data(n=96, classes=6):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.arange(n) % classes, images=torch.rand(n, 3, 16, 16, generator=g))


def _models(head_kind):
    torch.manual_seed(123)
    backbone = TinyNet()
    head = (
        ArcFaceHead(12, 6, s=16, m=0.3)
        if head_kind == "arcface"
        else PartialFCHead(12, 6, sample_rate=0.5, margin="cosface", s=16, m=0.2)
    )
    return backbone, head


CONFIGS = {
    "sgd-cosine": dict(optimizer="sgd", schedule="cosine", warmup_steps=2, grad_clip=1.0),
    "adamw-multistep-accum": dict(
        optimizer="adamw", lr=1e-3, schedule="multistep", milestones=(3, 6), grad_accum=2, amp="bf16"
    ),
}


@pytest.mark.parametrize("head_kind,cfg", [("arcface", "sgd-cosine"), ("partial-fc", "adamw-multistep-accum")])
def test_resume_is_exact(tmp_path, head_kind, cfg):
    base = TrainConfig(steps=8, batch_size=16, log_every=2, progress=False, **CONFIGS[cfg])
    ds = _data()
    b1, h1 = _models(head_kind)
    straight = train_classifier(b1, h1, ds, base, run_dir=tmp_path / "straight")
    assert straight["step"] == 8 and straight["finished"]

    b2, h2 = _models(head_kind)
    half = train_classifier(b2, h2, ds, base.evolve(stop_at=4), run_dir=tmp_path / "split")
    assert half["step"] == 4 and not half["finished"]
    ckpt = tmp_path / "split" / "checkpoints" / "train-last.safetensors"
    assert read_metadata(ckpt)["step"] == "4"
    b3, h3 = _models(head_kind)
    torch.manual_seed(999)  # a different RNG state: resume must restore it from the checkpoint
    resumed = train_classifier(b3, h3, ds, base, run_dir=tmp_path / "split", resume=True)
    assert resumed["step"] == 8 and resumed["finished"]
    for name, (a, b) in {"backbone": (b1, b3), "head": (h1, h3)}.items():
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs after resume"
    # the checkpoint on disk holds the same final weights
    disk = module_state(tmp_path / "split" / "checkpoints" / "train-last.safetensors", "backbone")
    assert all(torch.equal(disk[k], v) for k, v in b1.state_dict().items())
    lines = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 4  # logs at steps 2, 4 (first run) and 6, 8 (resumed), appended


def test_resume_errors_are_clear(tmp_path):
    b, h = _models("arcface")
    cfg = TrainConfig(steps=2, batch_size=8, progress=False)
    with pytest.raises(FacerecError, match="no checkpoint"):
        Trainer({"backbone": b, "head": h}, lambda *a: None, lambda i: None, cfg, run_dir=tmp_path, resume=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        Trainer({"backbone": b, "head": h}, lambda *a: None, lambda i: None, cfg, resume=bad)
    train_classifier(b, h, _data(), cfg, run_dir=tmp_path / "run")
    other = ArcFaceHead(12, 7)  # different number of classes
    with pytest.raises(CheckpointError, match="head.weight"):
        Trainer({"backbone": TinyNet(), "head": other}, lambda *a: None, lambda i: None, cfg, resume=tmp_path / "run")


def _loss(batch, modules, step):
    return modules["head"](modules["backbone"](batch["image"]), batch["label"]).loss


def _trainer(run_dir, steps, loss=_loss, resume=None):
    b, h = _models("arcface")
    ds = _data()
    cfg = TrainConfig(steps=steps, batch_size=8, progress=False, log_every=1)
    return Trainer(
        {"backbone": b, "head": h},
        loss,
        lambda i: ds.batch(range(8 * i % 96, 8 * i % 96 + 8)),
        cfg,
        run_dir=run_dir,
        resume=resume,
    )


def test_ctrl_c_writes_a_last_checkpoint_that_resumes_exactly(tmp_path):
    """Issue 23 item 3: SIGINT (Ctrl-C) mid-step finishes the step, checkpoints and stops; a temporary of a
    checkpoint write killed mid-way (its writer's pid is gone) is removed when the next run starts."""
    import signal
    import subprocess
    import sys

    from facerec.engine.trainer import TrainingInterrupted

    straight = _trainer(tmp_path / "straight", 6)
    straight.fit()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / "run" / "checkpoints" / f".train-last.safetensors.tmp{gone.pid}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 64)
    fired = []

    def ctrl_c_at_step_2(batch, modules, step):
        if step == 2 and not fired:
            fired.append(step)
            signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
        return _loss(batch, modules, step)

    interrupted = _trainer(tmp_path / "run", 6, ctrl_c_at_step_2)
    assert not stale.exists()
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT at step 3 of 6.*--resume") as info:
        interrupted.fit()
    assert info.value.exit_code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert read_metadata(tmp_path / "run" / "checkpoints" / "train-last.safetensors")["step"] == "3"
    resumed = _trainer(tmp_path / "run", 6, resume=True)
    resumed.fit()
    for name in ("backbone", "head"):
        a, b = straight.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
