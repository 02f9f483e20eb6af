"""Gallery: exact top-k on faiss and on torch tiles agree with brute force; approximate indexes report
recall against it; bad input is refused with the rows named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerec import metrics
from facerec._accel import int8_search
from facerec.metrics.gallery import Gallery, faiss_available, torch_topk

needs_int8 = pytest.mark.skipif(not int8_search.available(), reason="this torch has no x86 int8 kernels")
needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (extra facerec-core[search])")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3000, 64, generator=gen) * 3.0  # not unit rows: the gallery normalises them
    p = g[torch.randint(0, 3000, (200,), generator=gen)] + 2.0 * torch.randn(200, 64, generator=gen)
    truth = metrics.cosine_scores(p, g).double().topk(10, dim=1)
    return g, p, truth


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_exact_search_matches_brute_force(data, backend):
    g, p, truth = data
    gallery = Gallery(g, backend=backend)
    scores, idx = gallery.search(p, k=10)
    np.testing.assert_array_equal(idx.numpy(), truth.indices.numpy())
    torch.testing.assert_close(scores.double(), truth.values, atol=1e-5, rtol=0)
    assert gallery.recall_at_k(p, 10) == 1.0
    assert gallery.search(p[:0], k=3)[1].shape == (0, 3)
    assert Gallery(g[:2], backend=backend).search(p, k=5)[1].shape == (200, 2)


def test_torch_tiles_of_every_shape_give_the_same_top_k(data):
    g, p, truth = data
    gu, pu = _unit(g), _unit(p)
    # probe tiles, and gallery tiles whose last one is smaller than k (3000 = 7 x 427 + 11)
    for pc, gc in ((None, None), (7, None), (7, 427), (200, 3)):
        _, idx = torch_topk(gu, pu, 10, probe_chunk=pc, gallery_chunk=gc)
        np.testing.assert_array_equal(idx.numpy(), truth.indices.numpy())


def test_a_prepared_gallery_is_reused_without_copies(data):
    g, p, _ = data
    gu = _unit(g).contiguous()
    gallery = Gallery(gu, normalise=False, backend="torch")
    assert gallery.features.data_ptr() == gu.data_ptr()  # float32 C-contiguous unit rows: no copy
    s1, i1 = metrics.search(gallery, p, k=5)
    s2, i2 = metrics.search(g, p, k=5, backend="torch")
    assert torch.equal(i1, i2)


@needs_faiss
@pytest.mark.parametrize(
    "index,params",
    [
        ("ivf", {"nlist": 16, "nprobe": 16}),
        ("hnsw", {"ef_search": 200}),
        ("ivfpq", {"nlist": 8, "nprobe": 8, "pq_bytes": 16}),
    ],
)
def test_approximate_indexes_report_recall_against_the_exact_search(data, index, params):
    g, p, truth = data
    approx = Gallery(g, index=index, **params)
    recall = approx.recall_at_k(p, 10, exact=truth.indices)
    # every cell visited (ivf) or a wide beam (hnsw) is exact up to ties; pq codes lose some
    assert recall >= (0.99 if index != "ivfpq" else 0.5)
    narrow = Gallery(g, index="ivf", nlist=64, nprobe=1)
    assert narrow.recall_at_k(p, 10, exact=truth.indices) < recall or index == "ivfpq"


def _poisoned(g: torch.Tensor) -> torch.Tensor:
    bad = g.clone()
    bad[[5, 70]] = float("nan")
    bad[9, 0] = float("inf")
    return bad


#: name -> (the refusal, a call on the module's 3000 x 64 gallery and 200 x 64 probes)
BAD_INPUT = {
    "non-finite-gallery": (
        r"3 gallery feature\(s\) contain NaN or inf.*rows 5, 9, 70",
        lambda g, p: Gallery(_poisoned(g)),
    ),
    "non-finite-probe": (
        r"1 probe feature\(s\)",
        lambda g, p: metrics.search(g, torch.cat([p[:3], torch.full((1, 64), float("nan"))]), k=2),
    ),
    "k=0": ("k must be an integer >= 1", lambda g, p: metrics.search(g, p, k=0)),
    "k=-1": ("k must be an integer >= 1", lambda g, p: metrics.search(g, p, k=-1)),
    "k=2.5": ("k must be an integer >= 1", lambda g, p: metrics.search(g, p, k=2.5)),
    "dims": ("gallery has 64-d features but probe has 32-d", lambda g, p: metrics.search(g, p[:, :32], k=2)),
    "1-D": ("2-D", lambda g, p: Gallery(g[0])),
    "labels": ("3 gallery labels for 3000", lambda g, p: Gallery(g, labels=[1, 2, 3])),
    "index": ("index must be", lambda g, p: Gallery(g, index="lsh")),
}


@pytest.mark.parametrize(("message", "call"), BAD_INPUT.values(), ids=BAD_INPUT)
def test_bad_input_is_refused_naming_the_rows(data, message, call):
    g, p, _ = data
    with pytest.raises(metrics.MetricInputError, match=message):
        call(g, p)


@needs_int8
def test_int8_search_returns_the_exact_top_k():
    torch.manual_seed(3)
    g = _unit(torch.randn(9000, 128))  # two full int8 tiles and a last one of 808 rows (not whole groups)
    p = _unit(g[torch.randint(0, 9000, (600,))] + 0.6 * torch.randn(600, 128))
    S = metrics.cosine_scores(p, g)
    for k in (1, 10, 40, 128, 256):  # blocks of 16, 16, 6, 2, 1 groups
        sc, ix = metrics.search(g, p, k=k, precision="int8", normalise=False)
        top = S.topk(k, dim=1)
        # the same items; scores that tie within ~3e-8 (re-scoring rounds unlike the sgemm) may swap places
        np.testing.assert_array_equal(np.sort(ix.numpy(), 1), np.sort(top.indices.numpy(), 1))
        torch.testing.assert_close(sc, top.values)
        torch.testing.assert_close(S.gather(1, ix), top.values)
    # fewer gallery rows than a group, k = all of them; no probes
    sc, ix = metrics.search(g[:7], p, k=9, precision="int8")
    np.testing.assert_array_equal(ix.numpy(), S[:, :7].topk(7, dim=1).indices.numpy())
    assert metrics.search(g, p[:0], k=3, precision="int8")[1].shape == (0, 3)


@needs_int8
def test_int8_search_needs_its_margin_to_separate_near_ties():
    """200 gallery items 1e-5 apart in cosine, far below int8 resolution: without a margin the int8
    candidates miss some of the true top 10; with the default margin all are re-scored exactly."""
    torch.manual_seed(4)
    d = 256
    probe = _unit(torch.randn(1, d)).double()  # not axis-aligned, so int8 errors differ from item to item
    cos = 0.5 + 1e-5 * torch.randperm(200).double()
    side = torch.randn(200, d).double()
    side = _unit(side - (side @ probe.T) * probe)  # orthogonal to the probe
    near = (cos[:, None] * probe + (1 - cos[:, None] ** 2).sqrt() * side).float()
    probe = probe.float()
    g = torch.cat([_unit(torch.randn(3000, d)) * 0.3, near])  # noise rows score far lower
    truth = metrics.cosine_scores(probe, g).topk(10, dim=1).indices
    assert torch.equal(metrics.search(g, probe, k=10, precision="int8")[1], truth)
    assert not torch.equal(metrics.search(g, probe, k=10, precision="int8", margin=0.0)[1], truth)


@needs_int8
def test_int8_search_refuses_bad_input():
    g = _unit(torch.randn(100, 32))
    bad = g.clone()
    bad[5, 3] = float("nan")
    with pytest.raises(metrics.MetricInputError, match=r"1 gallery feature\(s\) contain NaN or inf.*rows 5"):
        metrics.search(bad, g[:4], k=2, precision="int8", normalise=False)
    with pytest.raises(metrics.MetricInputError, match="precision must be float32 or int8"):
        metrics.search(g, g[:4], k=2, precision="int4")
