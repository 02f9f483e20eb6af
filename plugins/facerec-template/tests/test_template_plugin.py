"""The template plugin's own tests: copy them along with the plugin."""

import torch

import facerec


def test_backbone_declares_its_input_and_embeds():
    net = facerec.create("backbone", "template-net", embedding_size=32)
    images = torch.rand(3, 3, 80, 80)  # canonical RGB images of any size
    emb = net.eval().embed(images)
    assert emb.shape == (3, 32)
    assert net.input_spec.prepare(images).shape == (3, 1, 64, 64)


def test_protocol_scores_a_perfect_and_a_useless_embedder():
    protocol = facerec.create("protocol", "template-rank1", num_ids=8, image_size=64)
    constant = protocol.evaluate(lambda x: torch.ones(len(x), 4))
    assert 0.0 <= constant.metrics["rank1"] <= 0.5
    # identity-revealing embedder: the raw pixels of the identity's frontal render are not available,
    # but a deterministic pixel embedding of nearly identical renders should beat the constant one
    pixels = protocol.evaluate(lambda x: torch.nn.functional.avg_pool2d(x, 8).flatten(1))
    assert pixels.metrics["rank1"] >= constant.metrics["rank1"]
