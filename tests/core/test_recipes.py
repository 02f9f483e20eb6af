"""Recipes as a package: parameter classes (presets, names, types, ranges; one check with components),
`facerun info recipe`, undeclared recipes refused, the one cached dataset and the one ROC/CMC plotter."""

from __future__ import annotations

import json
from typing import Literal

import attrs
import numpy as np
import pytest
import torch

from facerec import params as P
from facerec import registry, reports
from facerec.api import TensorDataset
from facerec.errors import FacerecError, ParameterError
from facerec.recipes import CachedDataset, PipelineConfig, knob, parse_params, recipe, run_pipeline


@attrs.frozen
class ToyParams:
    steps: int = knob(3, paper=300, low=1, high=1000, help="steps")
    mode: Literal["fast", "exact"] = knob("fast", paper="exact")
    scale: float = knob(0.5)
    name: str | None = knob(None)

    def __attrs_post_init__(self) -> None:
        if self.mode == "exact" and self.steps < 10:
            raise ValueError("mode 'exact' needs steps >= 10")


@recipe(params=ToyParams, stages=("one",))
def toy_recipe(config, run, params):
    """A toy recipe that reports its parameters."""
    return {"steps": params.steps, "mode": params.mode}


def _config(preset: str = "quick", *given: str) -> PipelineConfig:
    return PipelineConfig(backbone="small-cnn", recipe="toy", preset=preset, params=parse_params(given))


def test_parameters_per_preset_under_the_users_values():
    assert toy_recipe.resolve(_config()) == ToyParams(steps=3, mode="fast", scale=0.5, name=None)
    assert toy_recipe.resolve(_config("paper")) == ToyParams(steps=300, mode="exact")
    got = toy_recipe.resolve(_config("paper", "recipe.steps=20", "recipe.name=2024"))
    assert (got.steps, got.mode, got.name) == (20, "exact", "2024")  # a number given for a string: a string
    assert toy_recipe(_config("paper"), None) == {"steps": 300, "mode": "exact"}


@pytest.mark.parametrize(
    "given, message",
    [
        (
            "recipe.stepz=4",
            "--param recipe.stepz: recipe 'toy' has no parameter 'stepz' (did you mean steps?); "
            "accepted: steps, mode, scale, name",
        ),
        ("recipe.steps=0", "--param recipe.steps (recipe toy) must be in [1, 1000], got 0"),
        ("recipe.steps=2.5", "--param recipe.steps (recipe toy) must be an integer, got 2.5"),
        ("recipe.mode=slow", "--param recipe.mode (recipe toy) must be one of 'fast', 'exact', got 'slow'"),
        ("recipe.scale=nan", "--param recipe.scale (recipe toy) must be a finite number, got nan"),
        ("recipe.mode=exact", "recipe 'toy': mode 'exact' needs steps >= 10"),
    ],
)
def test_bad_parameters_are_one_line_errors(given, message):
    with pytest.raises(ParameterError) as err:
        toy_recipe.resolve(_config("quick", given))
    assert str(err.value) == message


def test_component_and_recipe_names_share_one_check():
    """registry.create, --param KIND.* and --param recipe.* refuse unknown names with one message shape."""
    with pytest.raises(
        ParameterError,
        match=r"^head 'arcface' has no parameter 'easy_margn' \(did you mean "
        r"easy_margin\?\); accepted: embedding_size, num_classes, s, m",
    ):
        registry.create("head", "arcface", embedding_size=4, num_classes=2, easy_margn=True)
    P.check_names(lambda **kw: None, {"anything": 1}, "f")  # takes **kwargs: any name
    assert P.accepted(ToyParams) == ["steps", "mode", "scale", "name"] and P.takes(ToyParams, "mode")
    assert P.declared_ranges(ToyParams) == {"steps": (1, 1000)}


def test_declaring_a_recipe_refuses_what_cannot_work():
    with pytest.raises(TypeError, match="attrs class"):
        recipe(params=dict)
    with pytest.raises(TypeError, match="needs a default"):
        recipe(params=attrs.make_class("NoDefault", ["x"]))


def test_info_recipe_lists_fields_types_presets_and_ranges(run_facerun):
    text = run_facerun("info", "recipe", "standard").stdout
    assert "parameters (--param recipe.NAME=VALUE):" in text
    assert "gen_ids: quick 16, paper 1000 (an integer; >= 1)  generated identities" in text
    assert "augment: default 'flip' (one of 'flip' or none)" in text
    assert "falls back to: head arcface, dataset synthetic, protocols synthetic-pairs" in text
    data = json.loads(run_facerun("info", "recipe", "standard", "--json").stdout)
    assert data["parameters"]["gen_steps"] == {
        "default": 50,
        "required": False,
        "annotation": "int",
        "quick": 50,
        "paper": 5000,
        "help": "generator training steps",
        "type": "an integer",
        "range": ">= 0",
    }
    assert data["stages"] == [] and data["summary"].startswith("Train a backbone")


def test_bad_recipe_parameter_through_facerun_is_one_line(tmp_path, run_facerun):
    proc = run_facerun(
        "--backbone", "small-cnn", "--out", str(tmp_path / "r"), "--param", "recipe.gen_ids=0", check=False
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: --param recipe.gen_ids (recipe standard) must be >= 1, got 0"]
    assert not (tmp_path / "r").exists()


def _register(monkeypatch, name: str, obj) -> None:
    real_find, real_load = registry.find, registry.load
    comp = registry.Component(name=name, kind="recipe", distribution="tests", version="0", target=f"tests:{name}")
    monkeypatch.setattr(registry, "find", lambda kind, n: comp if (kind, n) == ("recipe", name) else real_find(kind, n))
    monkeypatch.setattr(registry, "load", lambda kind, n: obj if (kind, n) == ("recipe", name) else real_load(kind, n))


def test_undeclared_recipe_is_a_one_line_error(tmp_path, monkeypatch):
    """A recipe must be declared with @recipe (the dict-knob plain functions are gone with facerec.pipeline)."""

    def plain(config, run):
        return {}

    _register(monkeypatch, "plain", plain)
    with pytest.raises(
        FacerecError, match=r"^recipe 'plain' is a plain function: declare it with facerec.recipes.recipe"
    ):
        run_pipeline(backbone="small-cnn", recipe="plain", out=str(tmp_path / "p"), echo=None)
    assert not (tmp_path / "p").exists()
    _register(monkeypatch, "broken", 42)
    with pytest.raises(FacerecError, match="recipe 'broken' is not callable"):
        run_pipeline(backbone="small-cnn", recipe="broken", out=str(tmp_path / "x"))


def test_cached_dataset_serves_lazy_float16_and_filled_uint8():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 4, 4, generator=g)
    inner = TensorDataset(torch.tensor([0, 1, 2, 0, 1, 2]), images=images, modality=torch.tensor([1, 0, 1, 0, 1, 0]))
    lazy = CachedDataset(inner)
    assert lazy.modality.tolist() == [1, 0, 1, 0, 1, 0] and not bool(lazy._have.any())
    first = lazy.batch([4, 1])
    assert torch.equal(first["image"], images[[4, 1]].half().float()) and first["modality"].tolist() == [1, 0]
    assert torch.equal(lazy.batch([1, 4])["image"], first["image"].flip(0))  # from the cache, same values
    full = CachedDataset(inner, storage="uint8", fill=True)
    assert bool(full._have.all()) and full._store["image"].dtype == torch.uint8
    got = full.batch([5, 0])
    assert torch.allclose(got["image"], images[[5, 0]], atol=0.5 / 255 + 1e-7)
    assert got["label"].tolist() == [2, 0] and full.labels.tolist() == inner.labels.tolist()
    item = full[3]
    assert item["label"] == 0 and item["modality"] == 0 and item["image"].shape == (3, 4, 4)
    with pytest.raises(ValueError, match="storage"):
        CachedDataset(inner, storage="bf16")


def test_one_roc_and_cmc_plotter(tmp_path):
    fpr, tpr = np.array([0.0, 0.001, 0.01, 0.1, 1.0]), np.array([0.2, 0.5, 0.7, 0.9, 1.0])
    assert reports.roc_points({"roc": {"fpr": fpr, "tpr": tpr, "thresholds": fpr}})[0] is fpr
    assert reports.roc_points({"roc_fpr": [0.1], "roc_tpr": [0.5]}) == ([0.1], [0.5])
    assert reports.roc_points({"scores": fpr}) is None
    if not reports.have_matplotlib():
        pytest.skip("matplotlib is not installed")
    roc = reports.plot_roc({"a": (fpr, tpr), "b": (fpr, tpr**2)}, tmp_path / "roc.png", "two models")
    cmc = reports.plot_cmc({"a": [0.5, 0.7, 0.9]}, tmp_path / "cmc.png", chance=0.1)
    for path in (roc, cmc):
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*tmp*"))
