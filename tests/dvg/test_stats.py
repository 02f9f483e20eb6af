"""The NIR-VIS comparison statistics: the same numbers as core's metrics, and bootstrap errors that
behave as the textbook says (binomial SE for rank-1, zero for a model against itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facerec import metrics
from facerec_dvg import stats


def _scores(noise: float, seed: int = 0, gallery: int = 120, per_id: int = 5):
    g = torch.Generator().manual_seed(seed)
    gl = torch.arange(gallery) + 1000
    pl = gl.repeat_interleave(per_id)
    f = torch.randn(gallery, 32, generator=g)
    q = f[(pl - 1000)] + noise * torch.randn(len(pl), 32, generator=g)
    return f, gl, q, pl


@pytest.mark.parametrize("noise", [0.5, 2.5])
def test_rank1_cmc_and_vr_match_core_metrics(noise):
    f, gl, q, pl = _scores(noise)
    ps = stats.probe_scores(metrics.cosine_scores(q, f), pl, gl)
    assert np.allclose(stats.cmc(ps, 10), metrics.cmc(f, gl, q, pl, max_rank=10))
    same = (pl[:, None] == gl[None, :]).view(-1).numpy()
    expected = metrics.tar_at_far(metrics.cosine_scores(q, f).view(-1).numpy(), same, fars=(1e-2, 1e-3))
    assert stats.vr_at_far(ps, 1e-2) == pytest.approx(expected[0])
    assert stats.vr_at_far(ps, 1e-3) == pytest.approx(expected[1])
    far, tar = stats.roc_curve(ps)
    assert far[-1] == 1.0 and tar[-1] <= 1.0 and np.all(np.diff(tar) >= 0)


def test_bootstrap_se_is_the_binomial_se_and_paired_differences_cancel():
    f, gl, q, pl = _scores(2.0)
    ps = stats.probe_scores(metrics.cosine_scores(q, f), pl, gl)
    est = stats.bootstrap_metrics({"a": [ps]}, replicates=2000)["a"]
    p, n = est["rank1"].value, ps.num_probes
    assert 0.1 < p < 0.9
    assert est["rank1"].se == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.15)
    assert est["rank1"].low < p < est["rank1"].high
    assert est["vr"].se > 0
    same = stats.paired_difference([ps], [ps])
    assert same.value == 0 and same.se == 0
    # a better model on the same probes: a positive difference whose paired SE is below the unpaired one
    f2, _, q2, _ = _scores(1.0)
    better = stats.probe_scores(metrics.cosine_scores(q2, f2), pl, gl)
    d = stats.paired_difference([better], [ps], replicates=2000)
    assert d.value > 0 and d.low > 0
    unpaired = math.hypot(est["rank1"].se, stats.bootstrap_metrics({"b": [better]})["b"]["rank1"].se)
    assert d.se < unpaired


def test_several_runs_average_their_hits():
    f, gl, q, pl = _scores(2.0)
    a = stats.probe_scores(metrics.cosine_scores(q, f), pl, gl)
    f2, _, q2, _ = _scores(1.0)
    b = stats.probe_scores(metrics.cosine_scores(q2, f2), pl, gl)
    both = stats.bootstrap_metrics({"ab": [a, b]})["ab"]["rank1"]
    assert both.value == pytest.approx((float((a.rank == 0).float().mean()) + float((b.rank == 0).float().mean())) / 2)


def test_probe_without_a_single_mate_is_refused():
    with pytest.raises(ValueError, match="exactly one gallery image"):
        stats.probe_scores(torch.zeros(2, 3), torch.tensor([5, 6]), torch.tensor([5, 5, 7]))
