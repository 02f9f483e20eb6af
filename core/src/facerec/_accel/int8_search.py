"""Int8 pre-selection for ``Gallery.search(precision="int8")``: candidates from int8 scores, exact re-scoring.

The probe x gallery products run as fbgemm int8 matrix products: the probes are packed once as the int8
"weight" (one scale per probe), and each gallery tile is quantised on the fly to 7-bit uint8 as the
"activation". 7 bits, because AVX2's u8 x s8 pair sums saturate int16 at 8 bits (measured: 8-bit
activations changed 0.2-1% of the top-10 lists that 7-bit ones got right). Each tile is screened by
the best int8 score of every 16-row group against a floor that rises as tiles go by; the hits are the
candidates. Re-scoring then runs in two steps: first each probe's k best int8 candidates, whose least
exact score can only be at or below the final k-th best; then only the candidates whose int8 score is
within ``margin / 2`` of that exact bound.

The result equals the exact search whenever no int8 score is off by more than ``margin / 2``. On unit
512-d rows the int8 error measured 0.001 RMS and 0.006 at most over 10^8 pairs; half the default margin
of 0.02 is ten times that RMS. That is a measurement, not a bound: this mode is approximate.
"""

from __future__ import annotations

import warnings

import torch

#: Gallery rows per int8 product (tiles of 2k-8k rows ran at the same speed; 1k was 7% slower).
TILE_ROWS = 4096
#: Gallery rows per group: a tile is first screened by the best score of each group of rows.
GROUP = 16
#: Groups per block (at most; fewer for large k): the floor comes from the k best block maxima.
BLOCK = 16
#: Pairs re-scored at once: small enough that the gathered rows stay in cache (55k at once took 3x longer).
PAIRS = 4096
#: Largest k worth it: candidate lists grow with k (1k probes x 100k gallery, int8 vs float32 speed:
#: 512-d rows 1.67x at k=10, 1.21x at k=256, 0.98x at k=512; 128-d rows 1.85x at k=256, 1.05x at 1024).
MAX_K = 256
#: Quantised engines whose int8 products were checked here (same errors; qnnpack was not).
ENGINES = ("x86", "fbgemm", "onednn")


def available() -> bool:
    """Whether torch has the int8 products (x86 builds do; torch marks them deprecated) on a checked engine."""
    return (
        hasattr(torch.ops.quantized, "linear_dynamic")
        and hasattr(torch.ops.quantized, "linear_prepack")
        and torch.backends.quantized.engine in ENGINES
    )


def _pack_rows(x: torch.Tensor):
    """Rows of ``x`` as an fbgemm int8 weight, symmetric, one scale per row."""
    scale = (x.abs().amax(1) / 127).clamp_min(1e-12).double()
    with warnings.catch_warnings():  # torch marks quantised tensors deprecated; the kernels are what we use
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(x, scale, torch.zeros(len(x), dtype=torch.long), 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None)


def _sorted_by_probe(probe: torch.Tensor, score: torch.Tensor, n_probes: int):
    """Order of (probe, score) pairs grouped by probe, best score first within each group; with each
    pair's rank inside its group."""
    score = score.double()
    top = score.max()
    order = torch.argsort(probe.double() * (top - score.min() + 1) + (top - score))  # probe, then best first
    counts = torch.bincount(probe, minlength=n_probes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[probe[order]]
    return order, rank


def _pair_scores(gallery, probe, g_idx, p_idx) -> torch.Tensor:
    """Exact float32 scores of (gallery row, probe row) pairs; index_select, since gathering rows by
    advanced indexing ran 10x slower on CPU."""
    return torch.linalg.vecdot(gallery.index_select(0, g_idx), probe.index_select(0, p_idx))


def _scores_in_chunks(gallery, probe, g_idx, p_idx) -> torch.Tensor:
    """:func:`_pair_scores` in chunks of :data:`PAIRS`."""
    return torch.cat(
        [_pair_scores(gallery, probe, g_idx[i : i + PAIRS], p_idx[i : i + PAIRS]) for i in range(0, len(g_idx), PAIRS)]
        or [gallery.new_empty(0)]
    )


def search(gallery: torch.Tensor, probe: torch.Tensor, k: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, indices) of every probe against float32 ``gallery`` rows (both already normalised as
    the caller wants, 1 <= k <= len(gallery), at least one probe)."""
    n_probe, n_gallery = probe.shape[0], gallery.shape[0]
    packed = _pack_rows(probe)
    best = torch.full((n_probe, k), -torch.inf)  # per probe: the k best block maxima so far
    block = max(1, min(BLOCK, TILE_ROWS // GROUP // k))  # a full tile alone gives >= k blocks
    cand_g, cand_p, cand_s = [], [], []
    for j in range(0, n_gallery, TILE_ROWS):
        approx = torch.ops.quantized.linear_dynamic(gallery[j : j + TILE_ROWS], packed, True)  # [rows, probes]
        if len(approx) % GROUP:  # the last tile: pad to whole groups (-inf rows, dropped below)
            approx = torch.cat([approx, approx.new_full((GROUP - len(approx) % GROUP, n_probe), -torch.inf)])
        groups = approx.view(-1, GROUP, n_probe)
        group_max = groups.amax(1)  # [groups, probes]
        # block (or group) maxima are distinct items, so their k-th best never exceeds the final k-th best
        # item; blocks rather than groups keep this top-k small (4% of the whole search at k=10)
        blocks = group_max if len(group_max) % block else group_max.view(-1, block, n_probe).amax(1)
        best = torch.cat([best, blocks.T], 1).topk(k, dim=1).values
        floor = best[:, -1] - margin
        grp, col = (group_max >= floor).nonzero(as_tuple=True)
        vals = groups[grp, :, col]  # [hits, GROUP]
        hit, member = (vals >= floor[col, None]).nonzero(as_tuple=True)
        cand_s.append(vals[hit, member])
        cand_g.append(grp[hit] * GROUP + member + j)
        cand_p.append(col[hit])
    g_idx, p_idx, s = torch.cat(cand_g), torch.cat(cand_p), torch.cat(cand_s)
    # early tiles met a lower floor: 2/3 of the candidates fall below the final one; drop them before
    # sorting. Padding rows qualify while fewer than k blocks set the floor (-inf): drop those too.
    kept = (s >= best[:, -1].index_select(0, p_idx) - margin) & (g_idx < n_gallery)
    g_idx, p_idx, s = g_idx[kept], p_idx[kept], s[kept]

    # Each probe's k best int8 items first (every probe has k: they clear every floor). Their least exact
    # score is a lower bound of the final k-th best, so every item of the true top k (int8 error <=
    # margin/2) has an int8 score within margin/2 of it: 25k pairs re-scored instead of 54k for a
    # 1k x 100k top-10, where "within margin of the k-th best int8 score" kept twice as many.
    order, rank = _sorted_by_probe(p_idx, s, n_probe)
    g_idx, p_idx, s = g_idx[order], p_idx[order], s[order]
    head = rank < k
    head_g, head_p = g_idx[head], p_idx[head]
    head_exact = _scores_in_chunks(gallery, probe, head_g, head_p)
    bound = head_exact.view(n_probe, k).amin(1)
    rest = ~head & (s >= bound.index_select(0, p_idx) - margin / 2)
    rest_g, rest_p = g_idx[rest], p_idx[rest]
    g_idx, p_idx = torch.cat([head_g, rest_g]), torch.cat([head_p, rest_p])
    exact = torch.cat([head_exact, _scores_in_chunks(gallery, probe, rest_g, rest_p)])
    order, rank = _sorted_by_probe(p_idx, exact, n_probe)
    top = order[rank < k]  # grouped by probe, best first, exactly k per probe
    return exact[top].view(n_probe, k), g_idx[top].view(n_probe, k)
