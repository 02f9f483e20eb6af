"""facerec.metrics against brute-force definitions and sklearn on random data with ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerec import metrics
from facerec.metrics import faiss_available
from facerec.errors import FacerecError


def _data(n=3000, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)  # many exact ties, including genuine/impostor ties
    return s, y


def test_roc_matches_sklearn_with_and_without_drop():
    skm = pytest.importorskip("sklearn.metrics")
    s, y = _data()
    for drop in (False, True):
        fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=drop)
        c = metrics.roc(s, y, drop_intermediate=drop)
        np.testing.assert_array_equal(c.fpr, fpr)
        np.testing.assert_array_equal(c.tpr, tpr)
        np.testing.assert_array_equal(c.thresholds, thr)
    assert metrics.auc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(s, y) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_roc_lower_is_same_mirrors():
    s, y = _data(seed=1)
    a = metrics.roc(s, y)
    b = metrics.roc(-s, y, higher_is_same=False)
    np.testing.assert_array_equal(a.tpr, b.tpr)
    np.testing.assert_array_equal(a.thresholds, -b.thresholds)


def test_tar_at_far_rules_against_brute_force():
    s, y = _data(seed=2)
    fars = [0.0, 1e-3, 0.01, 0.1, 0.5]
    c = metrics.roc(s, y)
    got = metrics.tar_at_far(s, y, fars)
    for far, tar in zip(fars, got):
        ok = c.fpr <= far
        assert tar == c.tpr[ok].max()
    # nearest: brute force as insightface (flip, first min)
    cd = metrics.roc(s, y, drop_intermediate=True)
    fpr, tpr = cd.fpr[::-1], cd.tpr[::-1]
    want = [tpr[min(zip(np.abs(fpr - f), range(len(fpr))))[1]] for f in fars]
    np.testing.assert_array_equal(metrics.tar_at_far(s, y, fars, rule="nearest"), want)
    above = [cd.tpr[np.flatnonzero(cd.fpr > f)[0]] for f in fars]
    np.testing.assert_array_equal(metrics.tar_at_far(s, y, fars, rule="above"), above)
    with pytest.raises(FacerecError, match="rule"):
        metrics.tar_at_far(s, y, fars, rule="bogus")


def test_eer_crossing():
    s, y = _data(seed=3, ties=False)
    e = metrics.eer(s, y)
    c = metrics.roc(s, y)
    # EER lies between FAR and FRR at the two points around the crossing
    i = np.argmax(1 - c.tpr <= c.fpr)
    assert c.fpr[i - 1] <= e <= c.fpr[i]
    assert 0.05 < e < 0.5
    perfect = metrics.eer([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1])
    assert perfect == 0.0


def _brute_kfold(s, y, k):
    n = len(s)
    edges = metrics.fold_bounds(n, k)
    accs = []
    for f in range(k):
        test = np.zeros(n, bool)
        test[edges[f] : edges[f + 1]] = True
        tr_s, tr_y = s[~test], y[~test]
        cands = np.concatenate((np.unique(tr_s), [np.inf]))
        train_acc = [np.mean((tr_s >= t) == tr_y) for t in cands]
        best = max(train_acc)
        accs.append((best, test))
    return accs


def test_kfold_exact_threshold_is_best_on_training_folds():
    s, y = _data(n=1203, seed=4)
    res = metrics.kfold_accuracy(s, y, 10)
    assert res.fold_sizes.tolist() == [121, 121, 121] + [120] * 7
    for f, (best_train, test) in enumerate(_brute_kfold(s, y, 10)):
        t = res.fold_threshold[f]
        train_acc = np.mean((s[~test] >= t) == y[~test])
        assert train_acc == pytest.approx(best_train, abs=1e-12)
        assert res.fold_accuracy[f] == pytest.approx(np.mean((s[test] >= t) == y[test]), abs=1e-12)
    assert res.std == pytest.approx(np.std(res.fold_accuracy))
    # distances (lower = same) give the same accuracies when mirrored
    res2 = metrics.kfold_accuracy(-s, y, 10, higher_is_same=False)
    np.testing.assert_allclose(res2.fold_accuracy, res.fold_accuracy)


@pytest.mark.parametrize(("strict", "tie"), [(True, "first"), (False, "last")])
def test_kfold_grid_matches_per_threshold_loop(strict, tie):
    s, y = _data(n=600, seed=5)
    grid = np.arange(-2, 3, 0.1)
    res = metrics.kfold_accuracy(s, y, 10, thresholds=grid, strict=strict, tie=tie)
    for f in range(10):
        test = np.zeros(600, bool)
        test[60 * f : 60 * f + 60] = True
        pred = (s[~test][None] > grid[:, None]) if strict else (s[~test][None] >= grid[:, None])
        acc = (pred == y[~test][None]).mean(1)
        best = np.argmax(acc) if tie == "first" else len(grid) - 1 - np.argmax(acc[::-1])
        assert res.threshold_index[f] == best


@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted-grid", "shuffled-grid"])
@pytest.mark.parametrize("higher", [True, False], ids=["higher-is-same", "lower-is-same"])
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "inclusive"])
def test_kfold_grid_scores_on_grid_values_every_rule(shuffled, higher, strict):
    """Scores lying exactly on (evenly spaced or shuffled) grid values, and infinite ones: each rule's
    per-fold counts match a brute-force comparison of every score with every threshold."""
    rng = np.random.default_rng(7)
    grid = np.arange(0, 4, 0.01)
    s = np.concatenate([rng.choice(grid, 590), rng.uniform(-1, 5, 8), [np.inf, -np.inf]])
    y = rng.random(s.size) < 0.5
    g = rng.permutation(grid) if shuffled else grid
    res = metrics.kfold_accuracy(s, y, 10, thresholds=g, higher_is_same=higher, strict=strict)
    for f in range(10):
        test = np.zeros(s.size, bool)
        test[60 * f : 60 * f + 60] = True
        d, t = s[:, None], g[None]
        pred = (d > t if strict else d >= t) if higher else (d < t if strict else d <= t)
        correct = pred == y[:, None]
        best = np.argmax(correct[~test].sum(0))
        assert res.threshold_index[f] == best and res.fold_accuracy[f] == correct[test, best].mean()


@pytest.mark.parametrize(
    "fn",
    [metrics.roc, metrics.kfold_accuracy, metrics.best_threshold_accuracy, metrics.auc],
    ids=lambda fn: fn.__name__,
)
def test_nan_scores_refused_with_count(fn):
    s, y = _data(n=100)
    s[[3, 50]] = np.nan
    with pytest.raises(FacerecError, match="2 NaN"):
        fn(s, y)


def test_one_class_and_shape_errors():
    with pytest.raises(FacerecError, match="both classes"):
        metrics.roc([0.1, 0.2], [1, 1])
    with pytest.raises(FacerecError, match="labels have"):
        metrics.roc([0.1, 0.2, 0.3], [1, 0])


def _brute_ranks(g, gl, p, pl):
    S = metrics.cosine_scores(p, g).numpy()
    out = []
    for i in range(len(p)):
        order = np.argsort(-S[i], kind="stable")
        hit = np.flatnonzero(gl[order] == pl[i])
        out.append(hit[0] + 1 if hit.size else 0)
    return np.array(out)


def test_rank_k_cmc_and_search_against_brute_force():
    torch.manual_seed(0)
    g = torch.randn(50, 16)
    gl = torch.arange(50) % 40  # some identities twice
    pl = torch.randint(0, 45, (120,))  # labels >= 40 have no mate
    p = torch.randn(120, 16) + 1.5 * g[torch.clamp(pl, max=49)]
    res = metrics.identification_ranks(g, gl, p, pl, chunk=17)
    np.testing.assert_array_equal(res.ranks, _brute_ranks(g, gl.numpy(), p, pl.numpy()))
    mated = res.ranks > 0
    assert res.n_mated == int((pl < 40).sum())
    r = metrics.rank_k(g, gl, p, pl, ks=(1, 5))
    assert r[1] == pytest.approx(np.mean(res.ranks[mated] == 1))
    assert r[5] == pytest.approx(np.mean(res.ranks[mated] <= 5))
    curve = metrics.cmc(g, gl, p, pl, max_rank=10)
    assert curve[0] == pytest.approx(r[1]) and curve[4] == pytest.approx(r[5]) and np.all(np.diff(curve) >= 0)
    S = metrics.cosine_scores(p, g)
    for backend in ("torch", "faiss") if faiss_available() else ("torch",):
        sc, ix = metrics.search(g, p, k=3, backend=backend)
        np.testing.assert_array_equal(ix.numpy(), S.topk(3, dim=1).indices.numpy())
        torch.testing.assert_close(sc, S.topk(3, dim=1).values)
        assert metrics.search(g, p[:0], k=3, backend=backend)[1].shape == (0, 3)
        assert metrics.search(g[:2], p, k=5, backend=backend)[1].shape == (120, 2)


def test_dir_at_fpir_definition():
    torch.manual_seed(1)
    g = torch.randn(30, 8)
    gl = torch.arange(30)
    pl = torch.cat([torch.arange(30), torch.arange(100, 140)])  # 40 non-mated probes
    p = torch.cat([g + 0.3 * torch.randn(30, 8), torch.randn(40, 8)])
    out = metrics.dir_at_fpir(g, gl, p, pl, fpirs=(0.0, 0.1, 1.0))
    res = metrics.identification_ranks(g, gl, p, pl)
    non = np.sort(res.best_nonmate[30:])[::-1]
    t = non[4]  # FPIR 0.1 of 40 -> 4 accepted, threshold above the 5th
    want = np.mean((res.ranks[:30] == 1) & (res.best_mate[:30] > t))
    assert out[0.1] == pytest.approx(want)
    assert out[0.0] <= out[0.1] <= out[1.0]
    assert out[1.0] == pytest.approx(np.mean(res.ranks[:30] == 1))


@pytest.mark.parametrize(("n", "levels"), [(50, 3), (500, 7), (4000, 40)])
@pytest.mark.parametrize("drop", [False, True], ids=["all-points", "drop-intermediate"])
def test_roc_heavy_ties_and_signed_zero_match_sklearn(n, levels, drop):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7 + n)
    y = rng.random(n) < 0.4
    s = rng.integers(-levels, levels, n).astype(float) / levels
    s[rng.random(n) < 0.1] = -0.0  # -0.0 and 0.0 are one threshold
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=drop)
    c = metrics.roc(s, y, drop_intermediate=drop)
    np.testing.assert_array_equal(c.fpr, fpr)
    np.testing.assert_array_equal(c.tpr, tpr)
    np.testing.assert_array_equal(c.thresholds, thr)
    assert metrics.average_precision(s, y) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("genuine", [5.0, -5.0, 0.25], ids=["above", "below", "between"])
def test_roc_of_a_single_genuine_score_matches_sklearn(genuine):
    """A single genuine score above, below and between the impostors."""
    skm = pytest.importorskip("sklearn.metrics")
    s = np.array([0.0, 0.5, 0.5, 1.0, genuine])
    y = np.array([0, 0, 0, 0, 1], bool)
    np.testing.assert_array_equal(metrics.roc(s, y).tpr, skm.roc_curve(y, s, drop_intermediate=False)[1])


def test_rank_ties_count_against_the_mate_by_default():
    import torch

    from facerec.metrics import rank_k

    g = torch.ones(5, 4)  # every gallery item scores the same against every probe
    labels = torch.arange(5)
    assert rank_k(g, labels, g.clone(), labels, ks=(1,))[1] == 0.0
    assert rank_k(g, labels, g.clone(), labels, ks=(5,))[5] == 1.0
    assert rank_k(g, labels, g.clone(), labels, ks=(1,), ties="optimistic")[1] == 1.0


def _brute_ranks_ties(S: torch.Tensor, gl: torch.Tensor, pl: torch.Tensor, strict: bool) -> np.ndarray:
    out = []
    for i in range(len(pl)):
        mate = gl == pl[i]
        if not mate.any():
            out.append(0)
            continue
        best = S[i][mate].max()
        out.append(1 + int((S[i][~mate] > best).sum() if strict else (S[i][~mate] >= best).sum()))
    return np.array(out)


@pytest.mark.parametrize("noise", [0.05, 3.0])  # few probes beaten (copy path) / most beaten (in-place path)
@pytest.mark.parametrize(("ties", "strict"), [("pessimistic", False), ("optimistic", True)])
def test_rank_counts_with_exact_ties_both_rules(noise, ties, strict):
    torch.manual_seed(3)
    g = torch.round(torch.randn(400, 6) * 2) / 2  # coarse values: many exactly tied cosines
    gl = torch.randint(0, 60, (400,))
    pl = torch.randint(0, 70, (90,))  # some probes without a mate
    p = torch.round((g[torch.randint(0, 400, (90,))] + noise * torch.randn(90, 6)) * 2) / 2
    S = metrics.cosine_scores(p, g)
    res = metrics.identification_ranks(g, gl, p, pl, ties=ties, chunk=len(p))  # one chunk: same sgemm as S
    np.testing.assert_array_equal(res.ranks, _brute_ranks_ties(S, gl, pl, strict))


def test_rank_refuses_non_finite_features_with_count():
    g = torch.randn(10, 4)
    g[[2, 5], 1] = float("nan")
    g[7, 0] = float("inf")
    with pytest.raises(metrics.MetricInputError, match="3 gallery feature"):
        metrics.identification_ranks(g, torch.arange(10), torch.randn(3, 4), torch.arange(3))


#: the refusal -> a call on a 20 x 8 gallery g and 4 x 8 probes p
DISAGREEING = {
    "scores has 3 values but labels have 2": lambda g, p: metrics.roc([0.1, 0.2, 0.3], [0, 1]),
    "empty": lambda g, p: metrics.kfold_accuracy([], []),
    "8-d features but": lambda g, p: metrics.cosine_scores(g, torch.randn(3, 5)),
    "same shape": lambda g, p: metrics.squared_l2(torch.randn(4, 8), torch.randn(5, 8)),
    "max_rank must be an integer >= 1": lambda g, p: metrics.cmc(g, torch.arange(20), p, torch.arange(4), max_rank=0),
    "ks must be an integer >= 1": lambda g, p: metrics.rank_k(g, torch.arange(20), p, torch.arange(4), ks=(1, 0)),
    "fpirs must lie in": lambda g, p: metrics.dir_at_fpir(g, torch.arange(20), p, torch.arange(4), fpirs=[1.5]),
    "2-D": lambda g, p: metrics.search(torch.randn(20), p),
    "probe_labels has": lambda g, p: metrics.identification_ranks(g, torch.arange(20), p, torch.arange(5)),
}


@pytest.mark.parametrize(("message", "call"), DISAGREEING.items(), ids=DISAGREEING)
def test_every_metric_checks_its_inputs_agree(message, call):
    """Issue 23 item 10: mismatched lengths and dimensions, empty inputs, bad k and rates raise MetricInputError."""
    from facerec.metrics import MetricInputError

    with pytest.raises(MetricInputError, match=message):
        call(torch.randn(20, 8), torch.randn(4, 8))
