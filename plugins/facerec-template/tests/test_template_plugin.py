"""The template plugin's own tests: copy them along with the plugin."""

import torch

import facerec


def test_backbone_declares_its_input_and_embeds():
    net = facerec.create("backbone", "template-net", embedding_size=32)
    images = torch.rand(3, 3, 80, 80)  # canonical RGB images of any size
    emb = net.eval().embed(images)
    assert emb.shape == (3, 32)
    assert net.input_spec.prepare(images).shape == (3, 1, 64, 64)


def test_protocol_scores_random_embeddings_near_chance():
    protocol = facerec.create("protocol", "template-rank1", num_ids=20, image_size=64)
    gen = torch.Generator().manual_seed(0)
    random = protocol.evaluate(lambda x: torch.randn(len(x), 16, generator=gen))
    assert random.metrics["rank1"] <= 0.3  # chance is 1/20
    pixels = protocol.evaluate(lambda x: torch.nn.functional.avg_pool2d(x, 8).flatten(1))
    assert isinstance(pixels.metrics["rank1"], float) and 0.0 <= pixels.metrics["rank1"] <= 1.0


def test_protocol_rejects_bad_parameters():
    import pytest

    with pytest.raises(facerec.errors.ParameterError, match="num_ids"):
        facerec.create("protocol", "template-rank1", num_ids=1)
