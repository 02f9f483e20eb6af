"""1:N identification: cosine scores, top-k search, ranks of the true mate, CMC, DIR@FPIR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np
import torch

from .checks import MetricInputError, _features, _labels_for, _normalise, _normalise_finite, _pair, _ranks, _rates


def cosine_scores(a, b) -> torch.Tensor:
    """Cosine similarity matrix [len(a), len(b)] in float32 (rows L2-normalised first)."""
    ta, tb = _features(a, "first feature set"), _features(b, "second feature set")
    _pair(ta, tb, "the first feature set", "the second")
    return _normalise(ta) @ _normalise(tb).T


#: Score-matrix elements computed at once by the chunked 1:N functions (16M floats = 64 MiB).
CHUNK_ELEMENTS = 1 << 24


def _chunk(chunk: int | None, n_gallery: int) -> int:
    return int(chunk) if chunk else max(1, min(4096, CHUNK_ELEMENTS // max(n_gallery, 1)))


def search(
    gallery,
    probe,
    k: int = 1,
    *,
    normalise: bool = True,
    device: str | None = None,
    backend: Literal["faiss", "torch"] | None = None,
    precision: Literal["float32", "int8"] = "float32",
    margin: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k gallery matches of every probe by cosine score: (scores [P, k], indices [P, k]), best first.

    ``gallery`` is features [G, D] or a prepared :class:`facerec.metrics.Gallery` (normalised once, also
    approximate indexes). Exact search runs on faiss when installed (the brute-force kernel of
    ``IndexFlatIP``), else on chunked torch products merged into a running top-k (memory bounded by the
    tile); ``device`` other than the CPU uses torch there. With ``normalise=False`` and float32 C-contiguous
    features nothing is copied. Non-finite rows are rejected with their count and indices.
    ``precision="int8"``: approximate int8 candidates re-scored exactly (see ``Gallery.search``).
    """
    from .gallery import Gallery

    if not isinstance(gallery, Gallery):
        gallery = Gallery(gallery, normalise=normalise, device=device or "cpu", backend=backend)
    return gallery.search(probe, k, normalise=normalise, precision=precision, margin=margin)


@attrs.frozen
class RankResult:
    """Closed-set identification: rank of the first mate per probe (0 = no mate in the gallery).

    ``cmc[r-1]`` is the fraction of mated probes whose mate is within rank r; the denominator is the
    number of probes with at least one mate in the gallery (probes without one are excluded).
    """

    ranks: np.ndarray
    cmc: np.ndarray
    n_mated: int
    best_mate: np.ndarray
    best_nonmate: np.ndarray

    def at(self, k: int) -> float:
        return float(self.cmc[min(k, self.cmc.size) - 1]) if self.n_mated else 0.0


def _count_ahead(sc: torch.Tensor, best_mate: torch.Tensor, beaten: torch.Tensor, strict: bool) -> torch.Tensor:
    """Per beaten probe, how many scores beat (``strict``) or reach the best mate's score. Works in
    place on ``sc`` (or on a copy of the beaten rows when few are): a bool mask's sum costs several
    times more on CPU than the sign trick below, and a fresh [c, G] buffer costs page faults."""
    rows = sc if 2 * len(beaten) > len(sc) else sc[beaten]
    d = rows.sub_(best_mate[:, None] if rows is sc else best_mate[beaten, None])
    # float sums of +-1 are exact below 2**24 per row; float64 beyond that
    acc = torch.float32 if d.shape[1] < 2**24 else torch.float64
    if strict:  # x > t  <=>  sign(max(x - t, 0)) == 1
        n = d.clamp_(min=0).sign_().sum(1, dtype=acc)
    else:  # x >= t  <=>  not (x - t < 0): G minus the count of negatives
        n = d.shape[1] + d.clamp_(max=0).sign_().sum(1, dtype=acc)
    n = n.round().long()
    return n[beaten] if rows is sc else n


def identification_ranks(
    gallery,
    gallery_labels,
    probe,
    probe_labels,
    *,
    max_rank: int | None = None,
    chunk: int | None = None,
    device: str | None = None,
    ties: str = "pessimistic",
) -> RankResult:
    """Rank of the first mate for every probe, with cosine scores computed in probe chunks
    (memory O(chunk x gallery)); no sorting at all.

    ``ties="pessimistic"`` (default): rank = 1 + non-mates scoring at least the best mate, so an
    embedder that scores everything alike gets no credit. ``"optimistic"``: only strictly higher
    non-mates count (what a top-k over index order gives the original scripts when nothing ties)."""
    if ties not in ("pessimistic", "optimistic"):
        raise MetricInputError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    strict = ties == "optimistic"
    if max_rank is not None:
        _ranks([max_rank], "max_rank")
    from .gallery import Gallery

    prepared = isinstance(gallery, Gallery)  # normalised and checked once, when it was built
    g, p = (gallery.features if prepared else _features(gallery, "gallery")), _features(probe, "probe")
    if g.shape[0] == 0 or p.shape[0] == 0:
        raise MetricInputError("identification needs a non-empty gallery and probe set")
    _pair(g, p, "gallery", "probe")
    gl = _labels_for(gallery_labels, g.shape[0], "gallery_labels", "gallery")
    pl = _labels_for(probe_labels, p.shape[0], "probe_labels", "probe")
    if device is not None:
        g, p, gl, pl = g.to(device), p.to(device), gl.to(device), pl.to(device)
    # checked on the features while normalising: O(N x D) instead of every score
    g, p = (g if prepared else _normalise_finite(g, "gallery")), _normalise_finite(p, "probe")
    ranks, mates, nonmates = [], [], []
    chunk = _chunk(chunk, g.shape[0])
    gt = g.T.contiguous()
    # gallery indices grouped by label (CSR), so each probe's mates are gathered, not masked
    g_order = torch.argsort(gl, stable=True)
    g_sorted = gl[g_order]
    with torch.inference_mode():
        for i in range(0, p.shape[0], chunk):
            sc = p[i : i + chunk] @ gt  # [c, G]
            lab = pl[i : i + chunk]
            lo = torch.searchsorted(g_sorted, lab)
            hi = torch.searchsorted(g_sorted, lab, right=True)
            n_mates = hi - lo
            rows = torch.repeat_interleave(torch.arange(len(lab), device=sc.device), n_mates)
            offs = torch.arange(int(n_mates.sum()), device=sc.device) - torch.repeat_interleave(
                torch.cumsum(n_mates, 0) - n_mates, n_mates
            )
            cols = g_order[torch.repeat_interleave(lo, n_mates) + offs]
            best_mate = torch.full((len(lab),), -torch.inf, device=sc.device)
            best_mate.scatter_reduce_(0, rows, sc[rows, cols], reduce="amax")
            sc[rows, cols] = -torch.inf  # mates out of the way: what remains are non-mates
            best_non = sc.amax(1)
            # only probes whose mate is beaten need the count of higher non-mates (rank-1 ones: 0)
            beaten = torch.nonzero(best_non > best_mate if strict else best_non >= best_mate).flatten()
            higher = torch.zeros(len(lab), dtype=torch.long, device=sc.device)
            if len(beaten):
                higher[beaten] = _count_ahead(sc, best_mate, beaten, strict)
            ranks.append(torch.where(n_mates > 0, higher + 1, torch.zeros_like(higher)).cpu())
            mates.append(best_mate.cpu())
            nonmates.append(best_non.cpu())
    r = torch.cat(ranks).numpy()
    n_mated = int((r > 0).sum())
    top = max_rank or g.shape[0]
    counts = np.bincount(r[r > 0], minlength=top + 1)[1 : top + 1]
    cmc = np.cumsum(counts) / max(n_mated, 1)
    return RankResult(
        ranks=r, cmc=cmc, n_mated=n_mated, best_mate=torch.cat(mates).numpy(), best_nonmate=torch.cat(nonmates).numpy()
    )


def rank_k(gallery, gallery_labels, probe, probe_labels, ks: Sequence[int] = (1, 5, 10), **kw) -> dict[int, float]:
    """Closed-set rank-k identification rates (denominator: probes with a mate in the gallery)."""
    ks = _ranks(ks, "ks")
    res = identification_ranks(gallery, gallery_labels, probe, probe_labels, **kw)
    return {k: res.at(k) for k in ks}


def cmc(gallery, gallery_labels, probe, probe_labels, max_rank: int = 20, **kw) -> np.ndarray:
    """Cumulative match characteristic: identification rate at ranks 1..max_rank."""
    (max_rank,) = _ranks([max_rank], "max_rank")
    res = identification_ranks(gallery, gallery_labels, probe, probe_labels, max_rank=max_rank, **kw)
    out = np.zeros(max_rank)
    out[: res.cmc.size] = res.cmc
    out[res.cmc.size :] = res.cmc[-1] if res.cmc.size else 0.0
    return out


def dir_at_fpir(
    gallery,
    gallery_labels,
    probe,
    probe_labels,
    fpirs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    *,
    result: RankResult | None = None,
    **kw,
) -> dict[float, float]:
    """Open-set 1:N: detection and identification rate at false positive identification rates.

    Non-mated probes (no mate in the gallery) set the threshold: FPIR(t) = share of them whose best
    score is >= t. DIR(t) = share of mated probes whose mate is at rank 1 AND scores >= t
    (insightface's corrected IJB 1:N definition, rank-1 = mate beats every non-mate).
    ``result``: the :func:`identification_ranks` of the same inputs, when already computed.
    """
    rates = _rates(fpirs, "fpirs")
    res = result if result is not None else identification_ranks(gallery, gallery_labels, probe, probe_labels, **kw)
    non = np.sort(res.best_nonmate[res.ranks == 0])[::-1]
    mated = res.ranks > 0
    if non.size == 0 or not mated.any():
        raise MetricInputError("DIR@FPIR needs both mated and non-mated probes")
    out = {}
    hit_scores = res.best_mate[mated & (res.ranks == 1)]
    for fp in rates:
        allowed = int(np.floor(fp * non.size))
        # threshold just above the (allowed+1)-th highest non-mate score: at most `allowed` accepted
        t = np.nextafter(non[allowed], np.inf) if allowed < non.size else -np.inf
        out[float(fp)] = float((hit_scores >= t).sum() / mated.sum())
    return out


# ----------------------------------------------------------------------------------- compat modes
