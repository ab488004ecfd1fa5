"""k-reciprocal encoding and its Jaccard overlap on sparse matrices.

This is the core shared by k-reciprocal re-ranking (Zhong et al., CVPR 2017;
``uda_reid.evaluation.rerank``) and the Jaccard distance that clustering-based adaptation
(SpCL / OpenUnReID / FastReID) clusters on (``uda_reid.adapt.pseudo_labels``). Both follow the
same steps on a k-nearest-neighbour ranking ``ranks`` (N, K) (row i: indices of i's nearest
points, nearest first, i itself normally first):

1. k-reciprocal set R(i): the j among i's first ``n_main`` neighbours that have i among their
   own first ``n_main`` neighbours.
2. Expansion: for each candidate c in R(i), its half set R_half(c) (same rule with ``n_half``
   neighbours) is added to R(i) when more than 2/3 of R_half(c) already lies in R(i).
3. Encoding V(i, j) = exp(-d(i, j)) / sum over the expanded set, over the expanded set.
4. Local query expansion: V(i) <- mean of V over i's first k2 neighbours (when k2 != 1).
5. Jaccard: overlap(i, j) = sum_l min(V(i, l), V(j, l)); distance 1 - overlap / (2 - overlap).

Every step is a vectorised sparse operation: sets are CSR indicator matrices (N, N), the
expansion test is one sparse product, the query expansion another, and the overlap is a
"min-product" enumerated through the inverted index (columns of V) and summed by ``bincount``
into dense blocks of a few rows (at most ~1 M cells each; small blocks are reused from the heap
instead of faulting in fresh pages). Nothing is (N, N) dense.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch

PairDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]


def half_neighbours(k1: int) -> int:
    """Neighbours used for the half sets: round(k1 / 2) + 1 (round half to even, as numpy)."""
    return int(np.around(k1 / 2.0)) + 1


def neighbour_indicator(ranks: np.ndarray, n: int) -> sp.csr_matrix:
    """(N, N) CSR with ones at (i, ranks[i, t]) for t < n; ranks (N, K) int."""
    num, n = ranks.shape[0], min(n, ranks.shape[1])
    cols = np.ascontiguousarray(ranks[:, :n]).ravel()
    indptr = np.arange(0, num * n + 1, n, dtype=np.int64)
    return sp.csr_matrix((np.ones(num * n, np.float32), cols, indptr), shape=(num, num))


def k_reciprocal_sets(ranks: np.ndarray, n: int) -> sp.csr_matrix:
    """(N, N) CSR indicator of R(i): j among the first n of ranks[i], i among those of ranks[j]."""
    a = neighbour_indicator(ranks, n)
    return a.multiply(a.T).tocsr()


def expanded_k_reciprocal_sets(ranks: np.ndarray, n_main: int, n_half: int) -> sp.csr_matrix:
    """(N, N) CSR indicator of R(i) expanded by the half sets that overlap it by more than 2/3."""
    r = k_reciprocal_sets(ranks, n_main)
    r_half = k_reciprocal_sets(ranks, n_half)
    half_size = np.diff(r_half.indptr)
    overlap = r.multiply(r @ r_half.T).tocoo()  # (i, c): |R(i) & R_half(c)| for c in R(i)
    accept = 3 * overlap.data.astype(np.int64) > 2 * half_size[overlap.col]  # > 2/3 |R_half(c)|
    chosen = sp.csr_matrix(
        (np.ones(int(accept.sum()), np.float32), (overlap.row[accept], overlap.col[accept])),
        shape=r.shape,
    )
    expanded = (r + chosen @ r_half).tocsr()
    expanded.data[:] = 1.0
    expanded.sort_indices()
    return expanded


def _row_ids(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def k_reciprocal_encoding(ranks: np.ndarray, n_main: int, n_half: int, k2: int,
                          pair_distance: PairDistance) -> sp.csr_matrix:
    """Sparse k-reciprocal encoding V (N, N) float32, rows summing to 1.

    ranks: (N, K) nearest-first neighbour indices. pair_distance(rows, cols) -> (P,) float32
    distances d(rows[p], cols[p]) used in the Gaussian-kernel weights exp(-d). The weights are
    normalised per row (a softmax, computed with the row minimum subtracted for stability).
    k2 != 1 applies the local query expansion over each row's first k2 neighbours.
    """
    sets = expanded_k_reciprocal_sets(ranks, n_main, n_half)
    rows, cols = _row_ids(sets), sets.indices
    d = np.asarray(pair_distance(rows, cols), dtype=np.float64)
    nonempty = np.diff(sets.indptr) > 0
    row_min = np.zeros(sets.shape[0])
    row_min[nonempty] = np.minimum.reduceat(d, sets.indptr[:-1][nonempty])
    w = np.exp(-(d - row_min[rows]))
    w /= np.bincount(rows, weights=w, minlength=sets.shape[0])[rows]
    v = sp.csr_matrix((w.astype(np.float32), cols, sets.indptr), shape=sets.shape)
    if k2 != 1:
        kq = min(k2, ranks.shape[1])
        mean = neighbour_indicator(ranks, kq)
        mean.data[:] = 1.0 / kq
        v = (mean @ v).tocsr()
    return v


def overlap_blocks(v: sp.csr_matrix, rows: Optional[np.ndarray] = None, col_start: int = 0,
                   max_cells: int = 1 << 20) -> Iterator[Tuple[int, int, np.ndarray]]:
    """Dense overlaps of ``rows`` of v with rows ``col_start:`` of v, a block of rows at a time.

    Yields ``(lo, hi, block)``: block (hi - lo, N - col_start) float64 with
    block[r, j] = sum_l min(v[rows[lo + r], l], v[col_start + j, l]), 0 where the two rows share
    no column. The terms are enumerated through the columns of v (an inverted index: each
    stored v[i, l] meets every stored v[j, l]) and summed by one ``bincount`` into the block;
    a block holds at most about ``max_cells`` cells.
    """
    num = v.shape[0]
    rows = np.arange(num) if rows is None else np.asarray(rows)
    width = num - col_start
    sub = v[rows].tocsr()
    vt = v[col_start:].tocsc()
    col_count = np.diff(vt.indptr)
    step = max(1, max_cells // max(width, 1))
    for lo in range(0, len(rows), step):
        hi = min(lo + step, len(rows))
        e0, e1 = sub.indptr[lo], sub.indptr[hi]
        cols, vals = sub.indices[e0:e1], sub.data[e0:e1]
        cnt = col_count[cols]
        ends = np.cumsum(cnt)
        # position in vt of every term: a run of col_count[l] entries per stored (r, l)
        pos = np.arange(ends[-1] if len(ends) else 0)
        pos += np.repeat(vt.indptr[cols] - (ends - cnt), cnt)
        row_base = np.repeat(np.arange(0, (hi - lo) * width, width), np.diff(sub.indptr[lo:hi + 1]))
        flat = np.repeat(row_base, cnt)
        flat += vt.indices[pos]
        mins = np.repeat(vals, cnt)
        np.minimum(mins, vt.data[pos], out=mins)
        block = np.bincount(flat, mins, minlength=(hi - lo) * width)
        yield lo, hi, block.reshape(hi - lo, width)


def jaccard_from_overlap(overlap: np.ndarray) -> np.ndarray:
    """Jaccard distance 1 - o / (2 - o) of overlaps o of encodings that each sum to 1."""
    return 1.0 - overlap / (2.0 - overlap)


def sparse_jaccard(v: sp.csr_matrix, max_cells: int = 1 << 20) -> sp.csr_matrix:
    """(N, N) float32 CSR Jaccard distance between the rows of v (N, N), each summing to 1.

    A pair is stored when its rows share a column of v (overlap > 0); absent pairs have
    distance 1. Values are clipped at 0; column indices ascend within each row.
    """
    num = v.shape[0]
    col_count = np.diff(v.tocsc().indptr).astype(np.int64)
    # every stored pair comes from at least one term: sum_l count_l^2 bounds the pairs. The
    # buffers are reserved at that size and shrunk in place, so only used pages are touched.
    capacity = int(min(np.square(col_count).sum(), num * num))
    data, indices = np.empty(capacity, np.float32), np.empty(capacity, np.int32)
    indptr = np.zeros(num + 1, np.int64)
    filled = 0
    for lo, hi, block in overlap_blocks(v, None, 0, max_cells):
        stored = block != 0
        flat = np.flatnonzero(stored)
        end = filled + len(flat)
        indices[filled:end] = flat % num
        data[filled:end] = np.maximum(jaccard_from_overlap(block.ravel()[flat]), 0.0)
        indptr[lo + 1:hi + 1] = filled + np.cumsum(np.count_nonzero(stored, axis=1))
        filled = end
    data.resize(filled, refcheck=False)
    indices.resize(filled, refcheck=False)
    return sp.csr_matrix((data, indices, indptr), shape=(num, num))


def feature_pair_distance(x: torch.Tensor, metric: str, ranks: Optional[np.ndarray] = None,
                          ranked: Optional[np.ndarray] = None, chunk: int = 4096) -> PairDistance:
    """Pair distances from features x (N, D): ``"l2"`` squared Euclidean, ``"ip"`` (1 - <x, y>)^2.

    The squared forms are what re-ranking (squared distances) and the Jaccard weights
    (squared Euclidean on l2-normalised features) put into exp(-d). When the k-NN ranks (N, K)
    and their distances ``ranked`` (N, K) (same form) are given, those pairs are looked up
    instead of recomputed, so that only pairs outside the k-NN lists touch the features
    (in chunks small enough for the gathered rows to stay in cache).
    """
    xn = x.detach().cpu().numpy()
    sq = np.einsum("ij,ij->i", xn, xn)
    num = xn.shape[0]
    keys = vals = None
    if ranks is not None:
        order = np.argsort(ranks, axis=1)
        keys = (np.arange(num)[:, None] * num + np.take_along_axis(ranks, order, 1)).ravel()
        vals = np.take_along_axis(ranked, order, 1).ravel().astype(np.float32)

    def compute(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.float32)
        for p in range(0, len(rows), chunk):
            r, c = rows[p:p + chunk], cols[p:p + chunk]
            dot = np.einsum("ij,ij->i", xn[r], xn[c])
            if metric == "l2":
                out[p:p + chunk] = np.maximum(sq[r] + sq[c] - 2.0 * dot, 0.0)
            else:
                out[p:p + chunk] = np.square(np.maximum(1.0 - dot, 0.0))
        return out

    def distance(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if keys is None:
            return compute(rows, cols)
        query = rows.astype(np.int64) * num + cols
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hit = keys[pos] == query
        out = np.empty(len(rows), np.float32)
        out[hit] = vals[pos[hit]]
        out[~hit] = compute(rows[~hit], cols[~hit])
        return out

    return distance
