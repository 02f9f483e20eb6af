"""The pipeline: parameter parsing, validation before work, run-directory contents, resume through
`facerun train`, the generator comparison, and one-line CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from facerec import registry
from facerec.api import GeneratedBatch, Generator, TensorDataset
from facerec.nn import SmallCNN
from facerec.errors import FacerecError, ParameterError, UnknownComponentError
from facerec.recipes import (
    CachedDataset,
    LabelledConcat,
    RunDir,
    markdown_table,
    parse_params,
    resolve_recipe,
    run_pipeline,
)

#: tiny settings that keep a full pipeline run to seconds
TINY = (
    "backbone.width=4",
    "backbone.embedding_size=16",
    "dataset.num_ids=8",
    "dataset.per_id=4",
    "protocol.pairs_per_fold=8",
    "protocol.num_folds=2",
    "train.batch_size=16",
    "train.log_every=2",
)


def test_parse_params_literals_and_errors():
    got = parse_params(
        [
            "backbone.width=8",
            "train.betas=(0.9, 0.99)",
            "recipe.augment=none",
            "head.name=arc x",
            "train.amp=bf16",
            "train.progress=false",
        ]
    )
    assert got["backbone"] == {"width": 8} and got["train"]["betas"] == (0.9, 0.99)
    assert got["recipe"] == {"augment": None} and got["head"] == {"name": "arc x"}
    assert got["train"]["amp"] == "bf16" and got["train"]["progress"] is False
    with pytest.raises(ParameterError, match="'width8': expected KIND.KEY=VALUE"):
        parse_params(["width8"])
    with pytest.raises(ParameterError, match="unknown kind 'model'"):
        parse_params(["model.width=3"])


#: name -> (run_pipeline arguments, the error, what it says)
REFUSED_BEFORE_WORK = {
    "backbone-typo": (dict(backbone="small-cn"), UnknownComponentError, "did you mean small-cnn"),
    "head-typo": (dict(backbone="small-cnn", head="arcfase"), UnknownComponentError, "arcface"),
    "head-param": (dict(backbone="small-cnn", params=("head.q=1",), head="cosface"), ParameterError, "head.q"),
    "train-param": (dict(backbone="small-cnn", params=("train.stepz=1",)), ParameterError, "did you mean train.steps"),
    "recipe-param": (dict(backbone="small-cnn", params=("recipe.gen_stepz=1",)), ParameterError, "recipe.gen_stepz"),
    "stage": (dict(backbone="small-cnn", stage="trunk"), ParameterError, "has no stages"),
    "recipe": (dict(backbone="small-cnn", recipe="nope"), UnknownComponentError, "no recipe named 'nope'"),
    "protocol": (dict(backbone="small-cnn", protocol=("synthetic-pairs", "lfw")), UnknownComponentError, "protocol"),
    "device": (dict(backbone="small-cnn", device="gpu"), ParameterError, "--device"),
    "resume": (dict(backbone="small-cnn", resume=True), FacerecError, "holds no earlier run"),
}


@pytest.mark.parametrize(("kwargs", "error", "text"), REFUSED_BEFORE_WORK.values(), ids=REFUSED_BEFORE_WORK)
def test_validation_happens_before_any_work(tmp_path, kwargs, error, text):
    out = tmp_path / "never"
    with pytest.raises(error, match=text):
        run_pipeline(out=str(out), echo=None, **kwargs)
    assert not out.exists()


def test_default_recipe_follows_the_backbone():
    assert resolve_recipe(None, "small-cnn", None) == "standard"
    assert resolve_recipe("dcr", "small-cnn", None) == "dcr"


def test_cli_pipeline_then_train_resume_is_exact(tmp_path, run_facerun):
    straight = tmp_path / "straight"
    proc = run_facerun(
        "--backbone",
        "small-cnn",
        "--out",
        str(straight),
        *[a for p in TINY for a in ("--param", p)],
        "--param",
        "train.steps=6",
        "--param",
        "recipe.augment=none",
        cwd=tmp_path,
    )
    assert "synthetic-pairs/accuracy" in proc.stdout and "Traceback" not in proc.stderr
    for name in (
        "config.json",
        "metrics.json",
        "summary.md",
        "log.jsonl",
        "backbone.safetensors",
        "checkpoints/train-last.safetensors",
        "eval/train-synthetic-pairs.json",
    ):
        assert (straight / name).is_file(), name
    config = json.loads((straight / "config.json").read_text())
    assert config["head"] == "arcface" and config["dataset"] == "synthetic" and config["params"]["train"]["steps"] == 6
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["step"] == 6 and 0.0 <= metrics["synthetic-pairs/accuracy"] <= 1.0
    assert "| synthetic-pairs/accuracy |" in (straight / "summary.md").read_text()
    records = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    state = load_file(str(straight / "backbone.safetensors"))
    model = SmallCNN(width=4, embedding_size=16, image_size=32)  # quick preset renders small-cnn at 32 px
    model.load_state_dict(state, strict=True)

    split = tmp_path / "split"
    common = [
        "train",
        "--backbone",
        "small-cnn",
        "--out",
        str(split),
        "--steps",
        "6",
        *[a for p in TINY for a in ("--param", p)],
        "--param",
        "recipe.augment=none",
    ]
    run_facerun(*common, "--param", "train.stop_at=3", cwd=tmp_path)
    assert not (split / "backbone.safetensors").exists()  # interrupted: no final model yet
    run_facerun(*common, "--resume", cwd=tmp_path)
    resumed = load_file(str(split / "backbone.safetensors"))
    assert state.keys() == resumed.keys()
    assert all(torch.equal(state[k], resumed[k]) for k in state)


def test_cli_errors_are_one_line(tmp_path, run_facerun):
    proc = run_facerun(
        "train", "--backbone", "small-cnn", "--out", str(tmp_path / "x"), "--param", "backbone.widht=3", check=False
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "backbone.widht" in lines[0] and "did you mean width" in lines[0]


class ToyGenerator(Generator):
    """Images of flat colours per identity; fit records that it ran."""

    def __init__(self, image_size: int = 16):
        super().__init__()
        self.image_size = image_size
        self.fitted = 0
        self.scale = torch.nn.Parameter(torch.ones(()))

    def fit(self, dataset, *, steps, batch_size=32, device="cpu", seed=0, progress=False):
        self.fitted = steps
        return {"steps": float(steps)}

    def sample(self, num_ids, per_id, *, seed=0, device="cpu", batch_size=64):
        g = torch.Generator().manual_seed(seed)
        colours = torch.rand(num_ids, 3, 1, 1, generator=g)
        labels = torch.arange(num_ids).repeat_interleave(per_id)
        images = colours[labels].expand(-1, 3, self.image_size, self.image_size).clone()
        yield GeneratedBatch(labels=labels, images=images)


def test_generator_comparison(tmp_path, monkeypatch):
    real_find, real_load = registry.find, registry.load

    def find(kind, name):
        if kind == "generator" and name == "toy":
            return registry.Component(
                name="toy", kind="generator", distribution="tests", version="0", target="tests:ToyGenerator"
            )
        return real_find(kind, name)

    monkeypatch.setattr(registry, "find", find)
    monkeypatch.setattr(
        registry,
        "load",
        lambda kind, name: ToyGenerator if (kind, name) == ("generator", "toy") else real_load(kind, name),
    )
    metrics = run_pipeline(
        backbone="small-cnn",
        generator="toy",
        out=str(tmp_path),
        echo=None,
        params=(*TINY, "train.steps=3", "recipe.gen_ids=3", "recipe.gen_per_id=4", "recipe.gen_steps=2"),
    )
    assert metrics["generator"] == {"steps": 2.0}
    assert metrics["baseline"]["step"] == 3 and metrics["with-generated"]["step"] == 3
    assert "delta/synthetic-pairs/accuracy" in metrics
    summary = (tmp_path / "summary.md").read_text()
    assert "With and without generated data" in summary and "| with-generated | 44 | 11 |" in summary
    for name in (
        "backbone-baseline.safetensors",
        "backbone-with-generated.safetensors",
        "pictures/generated-samples.png",
        "checkpoints/with-generated-last.safetensors",
    ):
        assert (tmp_path / name).is_file(), name


def test_labelled_concat_cached_dataset_and_rundir(tmp_path):
    first = TensorDataset(torch.tensor([0, 1, 2, 0]), images=torch.rand(4, 3, 8, 8))
    second = TensorDataset(torch.tensor([0, 1]), images=torch.rand(2, 3, 16, 16))
    both = LabelledConcat(first, second)
    assert len(both) == 6 and both.num_classes == 5
    got = both.batch([5, 0, 4, 2])
    assert got["label"].tolist() == [4, 0, 3, 2] and got["image"].shape == (4, 3, 8, 8)
    assert torch.equal(got["image"][1], first.data[0])
    cached = CachedDataset(first)
    a = cached.batch([3, 1])
    b = cached.batch([1, 3, 0])
    assert torch.equal(a["image"][0], b["image"][1]) and torch.equal(a["image"][0], first.data[3].half().float())
    assert b["label"].tolist() == [1, 0, 0]
    run = RunDir(tmp_path / "run")
    run.write_json("a/b.json", {"x": 1.5})
    assert json.loads((tmp_path / "run/a/b.json").read_text()) == {"x": 1.5}
    assert not list((tmp_path / "run").rglob(".*tmp*"))  # temporary files renamed away
    run.save_png("p.png", torch.rand(4, 3, 8, 8))
    assert (tmp_path / "run/p.png").read_bytes()[:4] == b"\x89PNG"
    assert markdown_table([{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}]).splitlines()[0] == "| a | b | c |"
