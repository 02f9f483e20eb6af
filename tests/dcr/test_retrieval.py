"""Retrieval precision@1: exact self-exclusion vs the original's drop-first rule."""

from __future__ import annotations

import pytest
import torch
from facerec.errors import ParameterError

from facerec_dcr.retrieval import precision_at_1


def _case():
    # reference i is query i's own HR image. Query 0's own image is NOT its nearest neighbour:
    # drop-first drops reference 1 (label 1, wrong) and keeps its own image -> counted correct;
    # exact exclusion removes its own image and then finds reference 1 -> wrong.
    ref = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.2, 5.0]])
    qry = torch.tensor([[0.9, 0.0], [1.1, 0.0], [5.0, 5.1], [5.2, 5.1]])
    labels = torch.tensor([0, 1, 2, 2])
    return qry, ref, labels


def test_exact_self_exclusion_differs_from_drop_first():
    q, r, y = _case()
    assert precision_at_1(q, r, y, y, self_exclusion="exact") == 0.5  # queries 2, 3 find each other's label
    assert precision_at_1(q, r, y, y, self_exclusion="drop_first") == 0.75
    assert precision_at_1(q, r, y, y) == 0.75  # plain kNN: only query 0 (nearest = ref 1) is wrong


RULES = ["none", "exact", "drop_first"]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_chunked_equals_unchunked_on_random_data(rule, metric):
    torch.manual_seed(0)
    q, r = torch.randn(300, 16), torch.randn(300, 16)
    yq, yr = torch.randint(0, 20, (300,)), torch.randint(0, 20, (300,))
    a = precision_at_1(q, r, yq, yr, self_exclusion=rule, metric=metric, chunk=7)
    b = precision_at_1(q, r, yq, yr, self_exclusion=rule, metric=metric, chunk=4096)
    assert a == b


@pytest.mark.parametrize("rule", RULES)
def test_faiss_backend_matches_torch(rule):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional extra facerec-dcr[faiss]")
    torch.manual_seed(1)
    q, r = torch.randn(200, 8), torch.randn(200, 8)
    y = torch.randint(0, 10, (200,))
    assert precision_at_1(q, r, y, y, self_exclusion=rule, backend="faiss") == precision_at_1(
        q, r, y, y, self_exclusion=rule
    )


def test_bad_arguments():
    q, r, y = _case()
    with pytest.raises(ParameterError, match="one reference per query"):
        precision_at_1(q, r[:3], y, y[:3], self_exclusion="exact")
    with pytest.raises(ParameterError, match="backend"):
        precision_at_1(q, r, y, y, backend="annoy")
