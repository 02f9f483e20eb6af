"""Everything installed together: every component of every distribution loads, no name is taken twice,
and components from different plugins work with each other through core's interfaces."""

from __future__ import annotations

import json

import pytest
import torch

import facerec
from facerec.api import Backbone, HeadOutput

BACKBONES = sorted(c.name for c in facerec.components("backbone"))
HEADS = sorted(c.name for c in facerec.components("head"))


def test_every_component_imports_and_no_name_is_registered_twice(run_facerun):
    rows = json.loads(run_facerun("plugins", "--json", "--check").stdout)
    assert not [r for r in rows if r["error"]], [(r["name"], r["error"]) for r in rows if r["error"]]
    seen: dict[tuple[str, str], str] = {}
    for r in rows:
        key = (r["kind"], r["name"])
        assert key not in seen, f"{key} registered by {seen[key]} and {r['distribution']}"
        seen[key] = r["distribution"]
    assert len({r["distribution"] for r in rows}) >= 6


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_embeds_canonical_images_of_its_own_size(name):
    torch.manual_seed(0)
    net = facerec.create("backbone", name)
    assert isinstance(net, Backbone)
    spec = net.input_spec
    images = torch.rand(2, 3, spec.canonical_size, spec.canonical_size)
    with torch.inference_mode():
        emb = net.eval().embed(images)
    assert emb.shape == (2, net.embedding_size)
    assert torch.isfinite(emb).all()
    assert not torch.allclose(emb[0], emb[1])  # depends on the input
    info = facerec.describe("backbone", name)
    assert info["input_spec"]["size"] == tuple(spec.size) or info["input_spec"]["size"] == list(spec.size)
    assert spec.alignment().name == spec.template  # the template it names is registered by someone


@pytest.mark.parametrize("head_name", HEADS)
def test_every_head_trains_on_a_core_backbone(head_name):
    torch.manual_seed(0)
    net = facerec.create("backbone", "small-cnn", width=8, embedding_size=32)
    head = facerec.create("head", head_name, embedding_size=32, num_classes=5)
    images = torch.rand(6, 3, 112, 112)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    out = head(net.embed(images), labels)
    assert isinstance(out, HeadOutput) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
