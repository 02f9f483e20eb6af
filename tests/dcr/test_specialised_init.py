"""Specialised initialisation (SI): every coupled branch starts as the identity on the trunk embedding, so
the branch stage starts exactly at the trunk's verification accuracy (it cannot start worse)."""

from __future__ import annotations

import facerec
import pytest
import torch
import torch.nn.functional as F

from facerec_dcr.evaluation import verification_metrics


@pytest.mark.parametrize("normalized", [False, True])
def test_si_branches_score_like_the_trunk(normalized):
    torch.manual_seed(0)
    model = facerec.create(
        "backbone",
        "dcr-trunk",
        num_classes=6,
        image_size=24,
        scales=(8, 12),
        layers=(1, 1, 1, 1),
        normalized_embeddings=normalized,
    ).eval()
    images = torch.rand(40, 3, 24, 24)
    with torch.no_grad():
        trunk = model(model.input_spec.prepare(images))
        random_init = model.branches[1](trunk, with_logits=False)[0]
        model.specialise_branches()
        for i in range(len(model.branches)):
            torch.testing.assert_close(model.branch_embedder(i)(images), trunk)
    assert not torch.allclose(F.normalize(random_init, dim=1), F.normalize(trunk, dim=1), atol=1e-3)
    # hence identical per-resolution accuracies, trunk vs branches
    same = torch.arange(20) % 4 < 2
    metrics, _ = verification_metrics(model, trunk[:20], {8: trunk[20:], 12: trunk[20:]}, same)
    for key in (8, 12):
        assert metrics[f"branch_acc_{key}"] == metrics[f"acc_{key}"]
