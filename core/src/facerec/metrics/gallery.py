"""1:N search over a gallery built once: exact top-k by cosine (faiss when installed, else torch tiles)
or approximate (faiss IVF, IVF-PQ, HNSW) with recall measured against the exact result.

A :class:`Gallery` normalises and checks its features once, at build time, and keeps them as one
float32 array; every search reuses it (no per-call copy of the gallery). Exact search runs faiss's
brute-force inner product (``faiss.knn``, the kernel behind ``IndexFlatIP``) on that array when
``faiss-cpu`` is installed (``pip install 'facerec-core[search]'``), and chunked torch products merged
into a running top-k otherwise (or on a GPU device). The approximate indexes hold their own encoded
copy, which is the point of them: memory or speed past what a flat scan allows.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .checks import MetricInputError, _features, _finite_row_norms, _pair, _ranks

Index = Literal["flat", "ivf", "ivfpq", "hnsw"]
Backend = Literal["faiss", "torch"]
Precision = Literal["float32", "int8"]

#: Score-matrix elements one torch tile computes at once (16M floats = 64 MiB).
TILE_ELEMENTS = 1 << 24


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MetricInputError("this index needs faiss: pip install 'facerec-core[search]' (faiss-cpu)") from None
    return faiss


def normalised(x: Any, name: str, *, normalise: bool = True) -> Tensor:
    """Checked float32 rows [N, D] (2-D, finite: a NaN row would score as every probe's best match),
    L2-normalised unless ``normalise`` is False; C-contiguous (no copy when already so)."""
    t = _features(x, name).detach().float()
    norms = _finite_row_norms(t, name)
    if normalise:
        t = t / norms.clamp_min(1e-12)
    return t.contiguous()


def merge_topk(best_s: Tensor | None, best_i: Tensor | None, s: Tensor, i: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The running top-k merged with a new part's top-k (scores and indices [P, <=k]); best first."""
    if best_s is None or best_i is None:
        return s, i
    s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
    s, order = torch.topk(s, k, dim=1)
    return s, i.gather(1, order)


def torch_topk(
    gallery: Tensor, probes: Tensor, k: int, *, probe_chunk: int | None = None, gallery_chunk: int | None = None
) -> tuple[Tensor, Tensor]:
    """Exact top-k inner products in tiles of probes x gallery rows, each tile's top k merged into the
    running top k (memory bounded by the tile). Any device."""
    pc = int(probe_chunk) if probe_chunk else min(max(len(probes), 1), 1024)
    # whole multiples of 256 gallery rows: odd tile edges ran sgemm 1.5x slower
    gc = max(k, int(gallery_chunk) if gallery_chunk else max(256, TILE_ELEMENTS // 4 // pc // 256 * 256))
    out_s, out_i = [], []
    with torch.inference_mode():
        for i in range(0, len(probes), pc):
            best_s: Tensor | None = None
            best_i: Tensor | None = None
            for j in range(0, len(gallery), gc):
                sc = probes[i : i + pc] @ gallery[j : j + gc].T
                s_, i_ = torch.topk(sc, min(k, sc.shape[1]), dim=1)
                best_s, best_i = merge_topk(best_s, best_i, s_, i_ + j, k)
            if best_s is None or best_i is None:  # an empty gallery: no candidates
                rows = len(probes[i : i + pc])
                best_s, best_i = probes.new_empty(rows, 0), torch.empty(rows, 0, dtype=torch.long)
            out_s.append(best_s.cpu())
            out_i.append(best_i.cpu())
    return torch.cat(out_s), torch.cat(out_i)


class Gallery:
    """Gallery features (and optional labels) prepared once for repeated 1:N search by cosine.

    ``index``: ``flat`` (exact), or approximate ``ivf`` (inverted lists; ``nlist`` cells, ``nprobe``
    visited), ``ivfpq`` (the same with product-quantised codes of ``pq_bytes`` per row: ~16x less memory
    at 512-d) or ``hnsw`` (graph; ``hnsw_m`` links, ``ef_search``). ``backend``: ``faiss`` or ``torch``
    (exact only); default faiss when installed and the device is the CPU.
    """

    def __init__(
        self,
        features: Any,
        labels: Any = None,
        *,
        normalise: bool = True,
        index: Index = "flat",
        backend: Backend | None = None,
        device: str = "cpu",
        nlist: int | None = None,
        nprobe: int = 16,
        pq_bytes: int = 64,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 200,
        train: Any = None,
        seed: int = 0,
    ):
        if index not in ("flat", "ivf", "ivfpq", "hnsw"):
            raise MetricInputError(f"index must be flat, ivf, ivfpq or hnsw, got {index!r}")
        if backend not in (None, "faiss", "torch"):
            raise MetricInputError(f"backend must be faiss or torch, got {backend!r}")
        on_cpu = torch.device(device).type == "cpu"
        if backend is None:
            backend = "faiss" if (faiss_available() and on_cpu) or index != "flat" else "torch"
        if backend == "torch" and index != "flat":
            raise MetricInputError(f"index {index!r} needs the faiss backend")
        if backend == "faiss" and not on_cpu:
            raise MetricInputError(f"the faiss backend runs on the CPU here; use backend='torch' on {device}")
        x = normalised(features, "gallery", normalise=normalise)
        self.index_kind, self.backend, self.device = index, backend, device
        self.dim, self.size = int(x.shape[1]), int(x.shape[0])
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
        if self.labels is not None and len(self.labels) != self.size:
            raise MetricInputError(f"{len(self.labels)} gallery labels for {self.size} gallery rows")
        self.nprobe, self.ef_search = int(nprobe), int(ef_search)
        self._flat: Tensor | None = None
        self._index: Any = None
        if index == "flat":
            self._flat = x.to(device)
            return
        # ``train``: rows to fit the cells / codebooks on, for a gallery then filled chunk by chunk with add()
        sample = x if train is None else normalised(train, "training", normalise=normalise)
        cells = int(nlist) if nlist else max(1, min(int(4 * np.sqrt(len(sample))), len(sample) // 39))
        self._index = self._make_index(index, cells, pq_bytes, hnsw_m, ef_construction)
        self._train(sample, cells, seed)
        if self.size:
            self._index.add(x.numpy())

    def __len__(self) -> int:
        return self.size

    @property
    def features(self) -> Tensor:
        """The normalised gallery [N, D] (flat index only: the approximate ones keep encoded rows)."""
        if self._flat is None:
            raise MetricInputError(f"a {self.index_kind} gallery keeps encoded rows only")
        return self._flat

    def _make_index(self, kind: str, cells: int, pq_bytes: int, hnsw_m: int, ef_construction: int) -> Any:
        faiss = _faiss()
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(hnsw_m), ip)
            index.hnsw.efConstruction = int(ef_construction)
            return index
        self._quantizer = faiss.IndexFlatIP(self.dim)  # the IVF index does not own it: keep it alive
        if kind == "ivf":
            return faiss.IndexIVFFlat(self._quantizer, self.dim, cells, ip)
        if self.dim % pq_bytes:
            raise MetricInputError(f"ivfpq: pq_bytes={pq_bytes} must divide the dimension {self.dim}")
        return faiss.IndexIVFPQ(self._quantizer, self.dim, cells, int(pq_bytes), 8, ip)

    def _train(self, x: Tensor, cells: int, seed: int) -> None:
        """IVF cells (and PQ codebooks) from at most 256 rows per cell (faiss warns below 39)."""
        if self.index_kind == "hnsw":
            return
        arr = x.numpy()
        if len(arr) > 256 * cells:
            arr = arr[np.sort(np.random.default_rng(seed).choice(len(arr), 256 * cells, replace=False))]
        self._index.train(arr)

    def add(self, features: Any, *, normalise: bool = True) -> None:
        """Append rows (approximate indexes: encoded and added in place; flat: one concatenation)."""
        x = normalised(features, "gallery", normalise=normalise)
        _pair(torch.empty(0, self.dim), x, "gallery", "added rows")
        if self._flat is not None:
            self._flat = torch.cat([self._flat, x.to(self.device)])
        else:
            self._index.add(x.numpy())
        self.size += int(x.shape[0])

    def search(
        self, probes: Any, k: int = 1, *, normalise: bool = True, precision: Precision = "float32", margin: float = 0.02
    ) -> tuple[Tensor, Tensor]:
        """Top-k gallery rows of every probe by cosine: (scores [P, k], indices [P, k]), best first.

        ``precision="int8"`` (flat gallery on the CPU, k <= 256, approximate): int8 products pick the
        candidates, which are re-scored exactly; equal to the exact top-k whenever no int8 score is off by
        more than ``margin / 2`` (measured on unit 512-d rows: 0.006 at most). It beat faiss's flat scan
        1.7x-1.9x at 1M rows on an AVX2 EPYC and lost (0.65x) on an AVX-512 Xeon: measure on yours
        (``benchmarks/bench_search.py``).
        """
        if precision not in ("float32", "int8"):
            raise MetricInputError(f"precision must be float32 or int8, got {precision!r}")
        k = min(_ranks([k], "k")[0], self.size)
        p = normalised(probes, "probe", normalise=normalise)
        _pair(torch.empty(0, self.dim), p, "gallery", "probe")
        if len(p) == 0 or k == 0:
            return torch.empty(len(p), k), torch.empty(len(p), k, dtype=torch.long)
        if precision == "int8":
            return self._search_int8(p, k, margin)
        if self.backend == "torch":
            assert self._flat is not None  # the torch backend is flat only (checked in __init__)
            return torch_topk(self._flat, p.to(self.device), k)
        faiss = _faiss()
        if self._flat is not None:
            scores, idx = faiss.knn(p.numpy(), self._flat.numpy(), k, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            if self.index_kind == "hnsw":
                self._index.hnsw.efSearch = max(self.ef_search, k)
            else:
                self._index.nprobe = self.nprobe
            scores, idx = self._index.search(p.numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(idx)

    def _search_int8(self, p: Tensor, k: int, margin: float) -> tuple[Tensor, Tensor]:
        from .._accel import int8_search

        if self._flat is None or torch.device(self.device).type != "cpu":
            raise MetricInputError("precision='int8' searches a flat gallery on the CPU")
        if not int8_search.available():
            raise MetricInputError(
                f"precision='int8' needs torch's int8 kernels on an x86 engine "
                f"{int8_search.ENGINES}; this torch has {torch.backends.quantized.engine!r}"
            )
        if k > int8_search.MAX_K:  # candidate lists grow with k: past 256 the exact scan is faster
            return self.search(p, k, normalise=False)
        with torch.inference_mode():
            parts = [int8_search.search(self._flat, p[i : i + 1024], k, margin) for i in range(0, len(p), 1024)]
        return torch.cat([s for s, _ in parts]), torch.cat([i for _, i in parts])

    def recall_at_k(self, probes: Any, k: int, exact: Sequence[Any] | Tensor | None = None) -> float:
        """Share of the exact top-k that this gallery's top-k finds (1.0 for a flat index). ``exact``: the
        exact indices [P, k] if already known (else computed by a flat scan, which needs the features)."""
        _, got = self.search(probes, k)
        if exact is None:
            if self._flat is None:
                raise MetricInputError("recall_at_k of an approximate gallery needs the exact indices")
            exact = self.search(probes, k)[1]
        truth = torch.as_tensor(np.asarray(exact)).long()
        hits = (got[:, :, None] == truth[:, None, :]).any(2).sum()
        return float(hits) / max(truth.numel(), 1)

    def __repr__(self) -> str:
        return f"Gallery({self.size} x {self.dim}, index={self.index_kind}, backend={self.backend})"
