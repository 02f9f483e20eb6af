"""Trainer behaviour: schedules, optimizer groups, accumulation, AMP, clipping, evaluators, early
stopping, data paths and user errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from facerec.api import Backbone, Dataset, EvalResult, InputSpec, Protocol, TensorDataset
from facerec.engine import StepIndices, TrainConfig, Trainer, lr_factor, train_classifier
from facerec.errors import FacerecError, ParameterError
from facerec.heads import CosFaceHead


class Net(Backbone):
    input_spec = InputSpec(size=8)
    embedding_size = 6

    def __init__(self, norm: bool = True):
        super().__init__()
        self.fc = nn.Linear(3 * 64, 16)
        self.norm = nn.LayerNorm(16) if norm else nn.Identity()
        self.out = nn.Linear(16, 6)

    def forward(self, x):
        return self.out(torch.relu(self.norm(self.fc(x.flatten(1)))))


def _data(n=48, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.arange(n) % classes, images=torch.rand(n, 3, 8, 8, generator=g))


def _models(seed=0, norm=True):
    torch.manual_seed(seed)
    return Net(norm), CosFaceHead(6, 4, s=8.0, m=0.2)


def test_schedules_by_hand():
    c = TrainConfig(steps=100, lr=0.1, schedule="multistep", milestones=(0.5, 80), gamma=0.1, warmup_steps=10)
    assert lr_factor(c, 0, 100) == pytest.approx(0.1)  # warm-up: (step+1)/10
    assert lr_factor(c, 9, 100) == pytest.approx(1.0)
    assert lr_factor(c, 49, 100) == 1.0 and lr_factor(c, 50, 100) == pytest.approx(0.1)
    assert lr_factor(c, 80, 100) == pytest.approx(0.01)
    cos = TrainConfig(steps=100, lr=0.1, schedule="cosine", min_lr=0.01)
    assert lr_factor(cos, 0, 100) == pytest.approx(1.0)
    assert lr_factor(cos, 50, 100) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cos, 100, 100) == pytest.approx(0.1)
    poly = TrainConfig(steps=10, schedule="poly", power=2.0)
    assert lr_factor(poly, 5, 10) == pytest.approx(0.25)
    step = TrainConfig(steps=10, schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(step, s, 10) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_optimizer_groups_no_decay_on_norm_and_bias_and_multipliers():
    backbone, head = _models()
    t = Trainer(
        {"backbone": backbone, "head": head},
        lambda *a: None,
        lambda i: None,
        TrainConfig(steps=1, lr=0.1, weight_decay=0.01, optimizer="adamw", progress=False),
        param_groups={"backbone.out": 0.5},
        frozen=("backbone.fc",),
    )
    where = {id(p): g for g in t.optimizer.param_groups for p in g["params"]}
    assert id(backbone.fc.weight) not in where and not backbone.fc.weight.requires_grad  # frozen
    assert where[id(backbone.norm.weight)]["weight_decay"] == 0.0
    assert where[id(backbone.out.bias)]["weight_decay"] == 0.0
    assert where[id(backbone.out.weight)]["weight_decay"] == 0.01
    assert where[id(backbone.out.weight)]["lr_mult"] == 0.5 and where[id(head.weight)]["lr_mult"] == 1.0
    assert isinstance(t.optimizer, torch.optim.AdamW)


def test_gradient_accumulation_equals_one_big_batch():
    results = []
    for accum in (1, 4):
        backbone, head = _models(norm=False)
        cfg = TrainConfig(steps=3, batch_size=16, grad_accum=accum, lr=0.3, momentum=0.9, progress=False)
        train_classifier(backbone, head, _data(), cfg, augment=None)
        results.append(torch.cat([p.detach().flatten() for p in (*backbone.parameters(), *head.parameters())]))
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=1e-4)
    assert not torch.equal(
        results[0],
        torch.cat(
            [p.detach().flatten() for p in (*_models(norm=False)[0].parameters(), *_models(norm=False)[1].parameters())]
        ),
    )


def test_grad_clip_bounds_the_update():
    backbone, head = _models()
    before = [p.detach().clone() for p in (*backbone.parameters(), *head.parameters())]
    cfg = TrainConfig(steps=1, batch_size=16, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip=0.01, progress=False)
    out = train_classifier(backbone, head, _data(), cfg, augment=None)
    after = [p.detach() for p in (*backbone.parameters(), *head.parameters())]
    delta = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    assert out["train/grad_norm"] > 0.01  # clipping was active
    assert float(delta) == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains(amp):
    backbone, head = _models()
    data = _data()
    everything = data.batch(list(range(len(data))))

    def full_loss():
        with torch.no_grad():
            return float(head(backbone(everything["image"]), everything["label"]).loss)

    before = full_loss()
    cfg = TrainConfig(steps=30, batch_size=16, lr=0.1, amp=amp, log_every=5, progress=False)
    out, trainer = train_classifier(backbone, head, data, cfg, augment=None, return_trainer=True)
    assert math.isfinite(out["train/loss"])
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    assert full_loss() < 0.8 * before


def test_evaluators_log_and_early_stopping(tmp_path):
    backbone, head = _models()
    calls = []

    def worsening(step):  # gets worse after the first evaluation: stops after `patience` more
        calls.append(step)
        return {"score": 1.0 / len(calls)}

    cfg = TrainConfig(
        steps=40,
        batch_size=8,
        eval_every=2,
        early_stopping_metric="score",
        early_stopping_patience=2,
        progress=False,
        log_every=1,
    )
    out = train_classifier(backbone, head, _data(), cfg, run_dir=tmp_path, evaluators=[worsening])
    assert calls == [2, 4, 6] and out["stopped_early"] and out["step"] == 6
    assert out["best"] == 1.0 and (tmp_path / "checkpoints" / "train-best.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6] and evals[0]["score"] == 1.0
    assert {"loss", "lr", "items_per_s", "acc"} <= set(records[0])


class MeanNormProtocol(Protocol):
    """A protocol object: evaluates the backbone it is given."""

    def __init__(self):
        self.seen = []

    def evaluate(self, model, *, device="cpu", batch_size=64, progress=False):
        self.seen.append(model.training)
        emb = model.embed(torch.rand(4, 3, 8, 8))
        return EvalResult(metrics={"norm": float(emb.norm(dim=1).mean())})


def test_protocol_evaluator_gets_the_backbone_in_eval_mode():
    backbone, head = _models()
    proto = MeanNormProtocol()
    out = train_classifier(
        backbone, head, _data(), TrainConfig(steps=2, batch_size=8, progress=False), evaluators={"toy": proto}
    )
    assert proto.seen == [False] and backbone.training
    assert out["toy/norm"] > 0


class SlowDataset(Dataset):
    """No fast batch(): the DataLoader path (with a worker process) is used."""

    num_classes = 4

    def __init__(self):
        self.inner = _data()

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


def test_dataloader_path_matches_fast_path():
    weights = []
    for dataset, workers in ((_data(), 0), (SlowDataset(), 1)):
        backbone, head = _models(norm=False)
        cfg = TrainConfig(steps=3, batch_size=8, num_workers=workers, progress=False)
        train_classifier(backbone, head, dataset, cfg, augment=None)
        weights.append(backbone.out.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


def test_step_indices_cover_every_sample_each_epoch():
    order = StepIndices(10, 4, seed=3)
    stream = torch.cat([order(i) for i in range(5)])  # 20 = two epochs
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(order(3), StepIndices(10, 4, seed=3)(3))  # random access, deterministic
    assert not torch.equal(stream[:10], stream[10:])


def test_iterable_batches_and_epochs():
    backbone, head = _models()
    data = _data(16)
    batches = [data.batch(list(range(i, i + 8))) for i in (0, 8)]  # one epoch = 2 batches
    seen = []

    def loss_fn(batch, modules, step):
        seen.append(step)
        return {"loss": modules["head"](modules["backbone"](batch["image"]), batch["label"]).loss}

    t = Trainer(
        {"backbone": backbone, "head": head}, loss_fn, batches, TrainConfig(epochs=2, batch_size=8, progress=False)
    )
    out = t.fit()
    assert t.total == 4 and out["step"] == 4 and seen == [0, 1, 2, 3]


def test_user_errors_are_clear():
    with pytest.raises(ParameterError, match="train.optimizer must be one of sgd, adamw, adam"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ParameterError, match="divisible by train.grad_accum"):
        TrainConfig(batch_size=10, grad_accum=4)
    with pytest.raises(ParameterError, match="unknown training option train.stpes.*did you mean train.steps"):
        TrainConfig().with_overrides({"stpes": 3})
    backbone, head = _models()

    def nan_loss(batch, modules, step):
        return {"loss": modules["head"](modules["backbone"](batch["image"]), batch["label"]).loss * float("nan")}

    t = Trainer(
        {"backbone": backbone, "head": head},
        nan_loss,
        lambda i: _data().batch(list(range(8))),
        TrainConfig(steps=3, batch_size=8, log_every=1, progress=False),
    )
    with pytest.raises(FacerecError, match="diverged at step 1"):
        t.fit()
    with pytest.raises(FacerecError, match="label 9 is out of range"):
        train_classifier(
            *_models(),
            TensorDataset(torch.tensor([0, 9] * 4), images=torch.rand(8, 3, 8, 8)),
            TrainConfig(steps=1, batch_size=8, progress=False),
        )
