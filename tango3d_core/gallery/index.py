"""Vector indexes over unit-length embeddings: exact (certified) and approximate (IVF).

Both answer "the ``k`` rows of ``vectors`` [N, G] with the largest inner product with a query
[G]" (cosine similarity, since every embedding is L2-normalised), optionally restricted to a
row mask and a minimum score. Scores returned to the caller are always float32 inner products
with the stored float32 vectors.

:class:`ExactIndex` (the default up to :data:`EXACT_LIMIT` rows)
    A scan of int8 codes (faiss ``QT_8bit_direct_signed``: a quarter of the bytes of float32,
    which is what bounds a scan of a million rows) followed by a float32 re-rank. The scan's
    error is bounded for every row (see :meth:`ExactIndex.error_bound`), so after the re-rank
    the result is *certified*: no row outside the candidates can beat the k-th result. When
    the certificate fails, a range search returns every row that could still beat it, and a
    float32 brute force is the last resort. The result equals a float32 brute force up to
    ties within float32 rounding (~1e-6).

:class:`ApproxIndex` (above :data:`EXACT_LIMIT` rows)
    IVF with 4-bit PQ fast-scan codes (48 bytes per 384-d row in RAM), its top
    ``k_factor * k`` candidates re-ranked with the float32 vectors (read from the memmap).
    ``nprobe`` and ``k_factor`` trade recall for speed; :meth:`ApproxIndex.tune` picks the
    cheapest setting that reaches a target recall@k against exact search on sample queries.

On disk an index is a folder: ``index.json`` (kind and parameters) plus the faiss or numpy
files of that kind; :func:`load_index` reads either. The float32 vectors are not part of the
index: they are passed in (usually a read-only ``np.memmap`` of the gallery's ``vectors.npy``).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import mmap
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_SHARDS",
    "EXACT_LIMIT",
    "ApproxIndex",
    "ExactIndex",
    "IndexKind",
    "SearchResult",
    "VectorIndex",
    "brute_force",
    "brute_force_batch",
    "build_index",
    "load_index",
    "recall_at_k",
]

EXACT_LIMIT = 1_000_000
"""Galleries up to this many rows get an :class:`ExactIndex`; larger ones an :class:`ApproxIndex`."""

IndexKind = Literal["auto", "exact", "approx"]

DEFAULT_SHARDS = min(2, os.cpu_count() or 1)
"""Threads an exact scan uses by default: two halves of the codes scanned at once (a scan is
bound by one core's memory bandwidth and faiss's per-row work, so two cores nearly halve it)."""

_CHUNK = 65_536          # rows per chunk when streaming over vectors (bounded memory)
_BRUTE_LIMIT = 20_000    # masks selecting at most this many rows are searched by brute force
_RANGE_LIMIT = 0.05      # a range search returning more than this fraction of rows -> brute force
_SLACK = 1e-4            # float rounding of the scores and of the bound itself


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a hard dependency
        raise ImportError("the gallery index needs faiss: pip install faiss-cpu") from e
    return faiss


@dataclass(frozen=True)
class SearchResult:
    """Top-k of one query, best first.

    scores  float32 [n] inner products with the float32 vectors (n <= k; fewer when the mask or
            ``min_score`` leaves fewer rows)
    ids     int64 [n] row numbers
    stats   how the answer was found: ``{"method": ..., "candidates": ..., "certified": ...}``
    """

    scores: np.ndarray
    ids: np.ndarray
    stats: dict[str, Any]


def _read_rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of ``array`` as an in-memory array.

    A memmap opened on a whole ``.npy`` file is read with plain file reads: slicing it would map
    its pages into this process, and a streaming pass over a 15 GB gallery would then count
    15 GB of resident memory (page cache, but the process's RSS all the same).
    """
    stop = min(stop, array.shape[0])
    if (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename
            and array.flags.c_contiguous and stop > start):
        per_row = int(np.prod(array.shape[1:], dtype=np.int64))
        out = np.fromfile(array.filename, dtype=array.dtype, count=(stop - start) * per_row,
                          offset=array.offset + start * per_row * array.dtype.itemsize)
        return out.reshape((stop - start, *array.shape[1:]))
    return np.asarray(array[start:stop])


def _check_vectors(vectors: Any) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-D float32 array [N, G], got {type(vectors).__name__} "
                         f"of shape {getattr(vectors, 'shape', None)}")
    if vectors.dtype != np.float32:
        raise ValueError(f"vectors must be float32, got {vectors.dtype}")
    if vectors.shape[1] == 0:
        raise ValueError("vectors have width 0")
    return vectors


def _check_query(query: Any, dim: int) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise ValueError(f"query width {q.shape[0]} does not match the index width {dim}")
    if not np.all(np.isfinite(q)):
        raise ValueError("the query has NaN or infinite values")
    return q


def _check_mask(mask: Any, n: int) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (n,):
        raise ValueError(f"mask must be a bool array of shape ({n},), got {m.dtype} {m.shape}")
    return m


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _top(scores: np.ndarray, ids: np.ndarray, k: int, min_score: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of (scores, ids) at or above ``min_score``, best first (ties: lower id first)."""
    if min_score is not None:
        keep = scores >= min_score
        scores, ids = scores[keep], ids[keep]
    if scores.shape[0] > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    order = np.lexsort((ids, -scores))
    return scores[order].astype(np.float32), ids[order].astype(np.int64)


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, *, rows: np.ndarray | None = None,
                min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float32 brute force: the reference every index is checked against.

    vectors  float32 [N, G] (a memmap is read in chunks)
    query    float32 [G]
    rows     int64 [M] rows to consider (default all)
    Returns (scores float32 [n], ids int64 [n]), best first, n <= k.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    best_s: list[np.ndarray] = []
    best_i: list[np.ndarray] = []
    total = vectors.shape[0] if rows is None else rows.shape[0]
    for s in range(0, total, _CHUNK):
        ids = np.arange(s, min(s + _CHUNK, total), dtype=np.int64) if rows is None else rows[s:s + _CHUNK]
        block = _read_rows(vectors, s, s + _CHUNK) if rows is None else vectors[np.sort(ids)]
        if rows is not None:
            ids = np.sort(ids)
        sc, ii = _top(np.asarray(block, dtype=np.float32) @ q, ids, k, min_score)
        best_s.append(sc)
        best_i.append(ii)
    if not best_s:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return _top(np.concatenate(best_s), np.concatenate(best_i), k, min_score)


def brute_force_batch(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 top-``k`` of many queries [Q, G] in one pass over ``vectors`` (a memmap is read
    once, in chunks): (scores float32 [Q, k], ids int64 [Q, k]), best first."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = _check_k(k)
    n = vectors.shape[0]
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for s in range(0, n, _CHUNK * 4):
        sc = q @ np.asarray(_read_rows(vectors, s, s + _CHUNK * 4), dtype=np.float32).T
        kk = min(k, sc.shape[1])
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sc, part, axis=1)], axis=1)
        best_i = np.concatenate([best_i, part + s], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.lexsort((best_i, -best_s), axis=1) if best_s.size else np.zeros_like(best_i)
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_i ∩ truth_i| / |truth_i|; found, truth int [Q, k] (-1 = none)."""
    found, truth = np.atleast_2d(found), np.atleast_2d(truth)
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"found has {found.shape[0]} queries, truth {truth.shape[0]}")
    r = []
    for f, t in zip(found, truth):
        t = set(int(x) for x in t if x >= 0)
        if t:
            r.append(len(t & set(int(x) for x in f if x >= 0)) / len(t))
    return float(np.mean(r)) if r else 1.0


def _single_threaded_pool(workers: int, name: str) -> concurrent.futures.ThreadPoolExecutor:
    """Threads whose faiss calls use one OpenMP thread each (the setting is per thread).

    A single query gains nothing from OpenMP's threads, and on a loaded machine their
    spin-waiting made a scan 1.5x slower; parallelism comes from shards instead.
    """
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name,
                                                 initializer=lambda: _faiss().omp_set_num_threads(1))


def _bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """faiss selector over ``mask``; the packed bits must outlive the selector (returned too)."""
    faiss = _faiss()
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bits)), bits


# ============================================================================ exact


class ExactIndex:
    """Certified exact top-k over float32 vectors, scanning int8 codes.

    Codes: ``c[n, i] = rint(s_i * x[n, i])`` with ``s_i = 127 / max_n |x[n, i]|``, so that
    ``|c - s x| <= 1/2``; the width is padded with zeros to a multiple of 16 (the SIMD path).
    A query ``q`` is folded into the scale, ``w_i = q_i / s_i``, and rounded to integers
    ``u = rint(t w)`` with ``t = 127 / max |w_i|``; faiss then computes ``D = sum u_i c_i``
    exactly (integers below 2^24) and ``D / t`` approximates ``q . x`` within
    :meth:`error_bound` for every row.

    vectors  float32 [N, G], kept by reference for the re-rank (may be a memmap)
    shards   row blocks scanned in parallel threads (faiss releases the GIL); default
             :data:`DEFAULT_SHARDS`, 1 = one thread
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray, *, shards: int | None = None, _codes: np.ndarray | None = None,
                 _scale: np.ndarray | None = None, _max_norm: float | None = None) -> None:
        self.vectors = _check_vectors(vectors)
        n, g = vectors.shape
        if shards is None:
            shards = DEFAULT_SHARDS
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        self.dim = g
        self.padded = -(-g // 16) * 16
        if _codes is not None and (_codes.shape != (n, self.padded) or _codes.dtype != np.uint8):
            raise ValueError(f"codes must be uint8 [{n}, {self.padded}], got {_codes.dtype} {_codes.shape}")
        if _codes is None or _scale is None or _max_norm is None:
            _scale, _max_norm = self._scale_of(vectors)
            _codes = None
        self.scale = np.asarray(_scale, dtype=np.float64)
        self.max_norm = float(_max_norm)
        self._scale_norm = float(np.linalg.norm(self.scale))
        # Shard boundaries are multiples of 8 rows so that a packed mask splits on byte edges.
        per = -(-max(n, 1) // shards)
        per = -(-per // 8) * 8
        self._starts = list(range(0, n, per)) if n else [0]
        self._shards = [self._empty_faiss_index() for _ in self._starts]
        # Codes go to faiss chunk by chunk: peak memory is the index itself (N x padded bytes),
        # never a second full copy.
        for s in range(0, n, _CHUNK):
            block = (_read_rows(_codes, s, s + _CHUNK) if _codes is not None
                     else self._encode(_read_rows(vectors, s, s + _CHUNK)))
            for j, start in enumerate(self._starts):
                lo, hi = max(s, start), min(s + len(block), start + per)
                if lo < hi:
                    self._shards[j].add_sa_codes(np.ascontiguousarray(block[lo - s:hi - s]))
        self._pool = _single_threaded_pool(len(self._shards), "gallery-scan")

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def codes(self) -> np.ndarray:
        """uint8 [N, padded] codes as stored (``c + 128``); a copy out of faiss."""
        faiss = _faiss()
        parts = [faiss.vector_to_array(ix.codes).reshape(-1, self.padded) for ix in self._shards]
        return np.concatenate(parts) if parts else np.zeros((0, self.padded), np.uint8)

    # ------------------------------------------------------------------ building
    @staticmethod
    def _scale_of(vectors: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-dimension scale ``127 / max |x_i|`` [G] and the largest row norm (one pass)."""
        n, g = vectors.shape
        amax = np.zeros(g, dtype=np.float64)
        max_norm = 0.0
        for s in range(0, n, _CHUNK):
            block = np.asarray(_read_rows(vectors, s, s + _CHUNK), dtype=np.float64)
            if not np.all(np.isfinite(block)):
                raise ValueError(f"vectors hold NaN or infinite values (rows {s}..{s + len(block) - 1})")
            amax = np.maximum(amax, np.abs(block).max(axis=0))
            max_norm = max(max_norm, float(np.sqrt((block * block).sum(axis=1)).max()))
        return np.where(amax > 0, 127.0 / np.where(amax > 0, amax, 1.0), 1.0), max_norm

    def _encode(self, block: np.ndarray) -> np.ndarray:
        """uint8 [n, padded] codes of float rows [n, G] (faiss stores ``c + 128``; 128 encodes 0)."""
        out = np.full((len(block), self.padded), 128, dtype=np.uint8)
        c = np.clip(np.rint(np.asarray(block, dtype=np.float64) * self.scale), -127, 127).astype(np.int16)
        out[:, :self.dim] = (c + 128).astype(np.uint8)
        return out

    def _empty_faiss_index(self) -> Any:
        faiss = _faiss()
        index = faiss.IndexScalarQuantizer(self.padded, faiss.ScalarQuantizer.QT_8bit_direct_signed,
                                           faiss.METRIC_INNER_PRODUCT)
        index.train(np.zeros((1, self.padded), dtype=np.float32))  # direct codes need no training
        return index

    # ------------------------------------------------------------------ the bound
    def _fold(self, q: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(integer query u float32 [padded], t, error bound) for the float query ``q`` [G]."""
        w = q.astype(np.float64) / self.scale
        wmax = float(np.abs(w).max())
        u = np.zeros(self.padded, dtype=np.float32)
        if wmax == 0.0:
            return u, 1.0, _SLACK
        t = 127.0 / wmax
        u[:self.dim] = np.clip(np.rint(w * t), -127, 127)
        bound = (self._scale_norm * self.max_norm / (2 * t) + 0.5 * float(np.abs(w).sum())
                 + self.dim / (4 * t))
        return u, t, bound + _SLACK

    def error_bound(self, query: Any) -> float:
        """Upper bound of ``|q . x - D / t|`` over every stored row ``x`` for this query [G].

        With ``e_i = t w_i - u_i`` (|e_i| <= 1/2) and ``f_i = s_i x_i - c_i`` (|f_i| <= 1/2):
        ``t (q . x) - D = sum e_i s_i x_i + sum u_i f_i``, so the error is at most
        ``(||s|| ||x|| / 2 + sum |u_i| / 2) / t <= ||s|| max||x|| / (2t) + sum |w_i| / 2 + G / (4t)``.
        """
        return self._fold(_check_query(query, self.dim))[2]

    # ------------------------------------------------------------------ search
    def _scan(self, u: np.ndarray, m: int, bits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``m`` rows by integer score over every shard: (D float64 [<=m], ids int64)."""
        faiss = _faiss()

        def one(j: int) -> tuple[np.ndarray, np.ndarray]:
            index, start = self._shards[j], self._starts[j]
            if index.ntotal == 0:
                return np.zeros(0), np.zeros(0, np.int64)
            params = None
            if bits is not None:
                sub = bits[start // 8:(start + index.ntotal + 7) // 8]
                sel = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(sub))
                params = faiss.SearchParameters(sel=sel)
            kk = min(m, index.ntotal)
            D, I = index.search(u[None], kk, params=params)
            ok = I[0] >= 0
            return D[0][ok].astype(np.float64), I[0][ok].astype(np.int64) + start

        parts = list(self._pool.map(one, range(len(self._shards))))
        D = np.concatenate([p[0] for p in parts])
        I = np.concatenate([p[1] for p in parts])
        if D.shape[0] > m:
            keep = np.argpartition(-D, m - 1)[:m]
            D, I = D[keep], I[keep]
        return D, I

    def _range(self, u: np.ndarray, radius: float, bits: np.ndarray | None) -> np.ndarray:
        """Every row whose integer score exceeds ``radius``."""
        faiss = _faiss()

        def one(j: int) -> np.ndarray:
            index, start = self._shards[j], self._starts[j]
            if index.ntotal == 0:
                return np.zeros(0, np.int64)
            params = None
            if bits is not None:
                sub = bits[start // 8:(start + index.ntotal + 7) // 8]
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(sub)))
            _, _, I = index.range_search(u[None], float(radius), params=params)
            return I.astype(np.int64) + start

        parts = list(self._pool.map(one, range(len(self._shards))))
        return np.concatenate(parts)

    def _exact(self, ids: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their float32 scores); sorted rows read a memmap in file order."""
        ids = np.sort(ids)
        return ids, np.asarray(self.vectors[ids], dtype=np.float32) @ q

    def search(self, query: Any, k: int, *, mask: np.ndarray | None = None,
               min_score: float | None = None, candidates: int = 1024) -> SearchResult:
        """Certified top-``k`` of ``query`` [G] (float32), best first.

        mask        bool [N]: rows allowed (default all)
        min_score   drop rows scoring below this
        candidates  rows re-ranked after the first scan (more: fewer second scans, dearer re-rank)
        """
        q = _check_query(query, self.dim)
        k = _check_k(k)
        mask = _check_mask(mask, self.ntotal)
        n_sel = self.ntotal if mask is None else int(mask.sum())
        if n_sel == 0:
            return SearchResult(np.zeros(0, np.float32), np.zeros(0, np.int64), {"method": "empty"})
        small = _BRUTE_LIMIT if mask is not None else max(int(candidates), 4 * k)
        if n_sel <= max(small, 4 * k):
            # Few rows: reading them is cheaper than scanning every code.
            s, i = brute_force(self.vectors, q, k, rows=np.flatnonzero(mask) if mask is not None else None,
                               min_score=min_score)
            return SearchResult(s, i, {"method": "brute_force", "candidates": n_sel, "certified": True})
        bits = np.packbits(mask, bitorder="little") if mask is not None else None
        u, t, bound = self._fold(q)
        m = min(max(int(candidates), 4 * k), n_sel)
        D, I = self._scan(u, m, bits)
        ids, exact = self._exact(I, q)
        scores, top = _top(exact, ids, k, min_score)
        # Lower bound on the k-th final score: it can only rise when more rows are seen.
        floor = scores[k - 1] if scores.shape[0] >= k else (min_score if min_score is not None else -math.inf)
        if D.shape[0] < m or floor > D.min() / t + bound:
            return SearchResult(scores, top, {"method": "scan", "candidates": int(D.shape[0]), "certified": True,
                                              "bound": bound})
        # Every row that can still reach ``floor`` scores at least floor - bound in the scan.
        if math.isfinite(floor):
            more = self._range(u, (floor - bound) * t - 0.5, bits)
            if more.shape[0] <= _RANGE_LIMIT * n_sel:
                ids, exact = self._exact(np.union1d(more, I), q)
                scores, top = _top(exact, ids, k, min_score)
                return SearchResult(scores, top, {"method": "scan+range", "candidates": int(ids.shape[0]),
                                                  "certified": True, "bound": bound})
        s, i = brute_force(self.vectors, q, k, rows=np.flatnonzero(mask) if mask is not None else None,
                           min_score=min_score)
        return SearchResult(s, i, {"method": "brute_force", "candidates": n_sel, "certified": True})

    # ------------------------------------------------------------------ storage
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``index.json`` + ``codes.npy`` (uint8 [N, padded]) + ``scale.npy`` (float64 [G])."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        codes = np.lib.format.open_memmap(d / "codes.npy.tmp", mode="w+", dtype=np.uint8,
                                          shape=(self.ntotal, self.padded))
        faiss = _faiss()
        for index, start in zip(self._shards, self._starts):
            codes[start:start + index.ntotal] = faiss.vector_to_array(index.codes).reshape(-1, self.padded)
        codes.flush()
        del codes
        (d / "codes.npy.tmp").replace(d / "codes.npy")
        _save_npy(d / "scale.npy", self.scale)
        _write_json(d / "index.json", {"kind": self.kind, "ntotal": self.ntotal, "dim": self.dim,
                                       "max_norm": self.max_norm})
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str], vectors: np.ndarray, *, shards: int | None = None
             ) -> ExactIndex:
        d = Path(directory)
        meta = _read_json(d / "index.json")
        _check_meta(meta, cls.kind, vectors)
        codes = np.load(d / "codes.npy", mmap_mode="r")
        return cls(vectors, shards=shards, _codes=codes, _scale=np.load(d / "scale.npy"),
                   _max_norm=float(meta["max_norm"]))


# ============================================================================ approximate


@dataclass(frozen=True)
class ApproxParams:
    """Search-time settings of :class:`ApproxIndex`.

    nprobe    inverted lists visited per query
    k_factor  candidates re-ranked with the float32 vectors = k_factor * k
    """

    nprobe: int = 32
    k_factor: int = 16


class ApproxIndex:
    """IVF + 4-bit PQ fast-scan candidates, re-ranked with the float32 vectors.

    vectors  float32 [N, G], kept by reference for the final re-score (may be a memmap)
    nlist    inverted lists (default: a power of two near 2 sqrt(N), at most 4096)
    pq_m     PQ sub-quantizers (default G / 4 when G is divisible by 4)
    """

    kind = "approx"

    def __init__(self, vectors: np.ndarray, *, nlist: int | None = None, pq_m: int | None = None,
                 params: ApproxParams = ApproxParams(), seed: int = 0, progress: bool = False,
                 _index: Any = None) -> None:
        self.vectors = _check_vectors(vectors)
        n, g = vectors.shape
        self.dim = g
        self.params = params
        self._pool = _single_threaded_pool(1, "gallery-ivf")
        if _index is not None:
            self.index = _index
            self.nlist = int(_faiss().extract_index_ivf(_index).nlist)
            return
        if n < 1000:
            raise ValueError(f"an approximate index needs at least 1000 rows (got {n}); use ExactIndex")
        if nlist is None:
            # ~2 sqrt(N) lists, at least 39 training rows each (faiss's k-means minimum); capped
            # at 4096 so that k-means on 10M rows stays a matter of minutes on two cores.
            nlist = min(2 ** round(math.log2(2 * math.sqrt(n))), 4096, max(16, n // 39))
        self.nlist = int(nlist)
        if pq_m is None:
            pq_m = g // 4 if g % 4 == 0 else g // 2 if g % 2 == 0 else g
        if g % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the width {g}")
        self.index = self._build(vectors, pq_m, seed, progress)

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    def _build(self, vectors: np.ndarray, pq_m: int, seed: int, progress: bool) -> Any:
        faiss = _faiss()
        n, g = vectors.shape
        rng = np.random.default_rng(seed)
        n_train = min(n, max(40 * self.nlist, 65_536))
        sample = np.sort(rng.choice(n, n_train, replace=False))
        train = np.ascontiguousarray(vectors[sample], dtype=np.float32)
        quantizer = faiss.IndexFlatIP(g)
        ivf = faiss.IndexIVFPQFastScan(quantizer, g, self.nlist, pq_m, 4, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = int(seed)
        t0 = time.perf_counter()
        ivf.train(train)
        del train
        # Coarse assignment by the flat quantizer: one BLAS product per chunk. (An HNSW graph over
        # the centroids evaluates fewer distances but one query at a time: 9x slower here.)
        bar = _progress_bar(n, "indexing", progress)
        for s in range(0, n, _CHUNK):
            block = np.ascontiguousarray(_read_rows(vectors, s, s + _CHUNK), dtype=np.float32)
            ivf.add(block)
            bar.update(len(block))
        bar.close()
        self.build_seconds = time.perf_counter() - t0
        return ivf  # its Python wrapper keeps the quantizer alive (referenced_objects)

    def search(self, query: Any, k: int, *, mask: np.ndarray | None = None,
               min_score: float | None = None, params: ApproxParams | None = None) -> SearchResult:
        """Approximate top-``k`` of ``query`` [G]; scores re-computed with the float32 vectors."""
        faiss = _faiss()
        q = _check_query(query, self.dim)
        k = _check_k(k)
        mask = _check_mask(mask, self.ntotal)
        p = params or self.params
        if mask is not None:
            n_sel = int(mask.sum())
            if n_sel == 0:
                return SearchResult(np.zeros(0, np.float32), np.zeros(0, np.int64), {"method": "empty"})
            if n_sel <= max(_BRUTE_LIMIT, 4 * k):
                s, i = brute_force(self.vectors, q, k, rows=np.flatnonzero(mask), min_score=min_score)
                return SearchResult(s, i, {"method": "brute_force", "candidates": n_sel})
        bits = None
        sp = faiss.SearchParametersIVF(nprobe=int(p.nprobe))
        if mask is not None:
            sel, bits = _bitmap_selector(mask)
            sp = faiss.SearchParametersIVF(nprobe=int(p.nprobe), sel=sel)
        m = min(max(k, int(p.k_factor) * k), self.ntotal)
        _, I = self._pool.submit(self.index.search, q[None], m, params=sp).result()
        del bits
        ids = np.sort(I[0][I[0] >= 0].astype(np.int64))
        exact = np.asarray(self.vectors[ids], dtype=np.float32) @ q
        scores, top = _top(exact, ids, k, min_score)
        return SearchResult(scores, top, {"method": "ivf", "nprobe": p.nprobe, "k_factor": p.k_factor})

    def tune(self, queries: np.ndarray, *, k: int = 10, target: float = 0.95,
             truth: np.ndarray | None = None) -> tuple[ApproxParams, float]:
        """Fastest (nprobe, k_factor) whose recall@k against exact search reaches ``target`` on
        ``queries`` [Q, G] (timed here, on this machine); sets and returns it with its recall.
        When no setting reaches the target, the one with the best recall.

        truth  int64 [Q, k] exact top-k (computed by brute force when not given)
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if truth is None:
            truth = brute_force_batch(self.vectors, queries, k)[1]
        scored: list[tuple[float, float, ApproxParams]] = []   # (recall, seconds, params)
        for nprobe in (4, 8, 16, 32, 64, 128, 256):
            if nprobe > self.nlist:
                break
            # Re-ranking more than ~1000 candidates costs more than it brings (and faiss's
            # fast-scan top-k gets slow for very large k).
            for k_factor in (4, 8, 16, 32, 64, 128):
                p = ApproxParams(nprobe=nprobe, k_factor=k_factor)
                t0 = time.perf_counter()
                found = np.stack([_pad(self.search(qq, k, params=p).ids, k) for qq in queries])
                scored.append((recall_at_k(found, truth), time.perf_counter() - t0, p))
        good = [s for s in scored if s[0] >= target]
        recall, _, params = min(good, key=lambda s: s[1]) if good else max(scored, key=lambda s: (s[0], -s[1]))
        self.params = params
        return params, recall

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``index.json`` + ``ivf.faiss`` (the IVF-PQ fast-scan index)."""
        faiss = _faiss()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "ivf.faiss.tmp"
        faiss.write_index(self.index, str(tmp))
        tmp.replace(d / "ivf.faiss")
        _write_json(d / "index.json", {"kind": self.kind, "ntotal": self.ntotal, "dim": self.dim,
                                       "nlist": self.nlist, "params": asdict(self.params)})
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str], vectors: np.ndarray) -> ApproxIndex:
        faiss = _faiss()
        d = Path(directory)
        meta = _read_json(d / "index.json")
        _check_meta(meta, cls.kind, vectors)
        index = faiss.read_index(str(d / "ivf.faiss"))
        return cls(vectors, params=ApproxParams(**meta["params"]), _index=index)


VectorIndex = ExactIndex | ApproxIndex


def build_index(vectors: np.ndarray, *, kind: IndexKind = "auto", exact_limit: int = EXACT_LIMIT,
                shards: int | None = None, seed: int = 0, progress: bool = False) -> VectorIndex:
    """An :class:`ExactIndex` for up to ``exact_limit`` rows (or ``kind="exact"``), else an
    :class:`ApproxIndex` tuned for recall@10 >= 0.97 on 64 sample queries (noisy copies of
    stored rows), a margin over the 0.95 it should keep on other queries."""
    vectors = _check_vectors(vectors)
    if kind not in ("auto", "exact", "approx"):
        raise ValueError(f"kind must be 'auto', 'exact' or 'approx', got {kind!r}")
    if kind == "exact" or (kind == "auto" and vectors.shape[0] <= exact_limit):
        return ExactIndex(vectors, shards=shards)
    index = ApproxIndex(vectors, seed=seed, progress=progress)
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(vectors.shape[0], 64, replace=False))
    q = np.asarray(vectors[rows], dtype=np.float32) + rng.normal(0, 0.5 / math.sqrt(vectors.shape[1]),
                                                                 (64, vectors.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index.tune(q, k=10, target=0.97)  # a margin over the 0.95 promised on other queries
    return index


def load_index(directory: str | os.PathLike[str], vectors: np.ndarray, *, shards: int | None = None
               ) -> VectorIndex:
    """Read an index saved by ``ExactIndex.save`` / ``ApproxIndex.save``."""
    meta = _read_json(Path(directory) / "index.json")
    if meta.get("kind") == "exact":
        return ExactIndex.load(directory, vectors, shards=shards)
    if meta.get("kind") == "approx":
        return ApproxIndex.load(directory, vectors)
    raise ValueError(f"{directory}: unknown index kind {meta.get('kind')!r}")


# ============================================================================ helpers


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, -1, dtype=np.int64)
    out[:min(k, ids.shape[0])] = ids[:k]
    return out


def _check_meta(meta: dict[str, Any], kind: str, vectors: np.ndarray) -> None:
    if meta.get("kind") != kind:
        raise ValueError(f"index kind is {meta.get('kind')!r}, expected {kind!r}")
    if (int(meta["ntotal"]), int(meta["dim"])) != tuple(vectors.shape):
        raise ValueError(f"index covers {meta['ntotal']} rows of width {meta['dim']}, but the vectors are "
                         f"{vectors.shape[0]} x {vectors.shape[1]}: rebuild the index")


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))
    tmp.replace(path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the index was not built (or was deleted)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rebuild the index") from None


class _NoBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True)
