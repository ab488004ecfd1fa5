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
instead of faulting in fresh pages). The symmetric Jaccard distance enumerates only the pairs
i <= j (half the terms) and mirrors them into the output in place.
Nothing is (N, N) dense.
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


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of the ranges [starts[r], stops[r]) (int64)."""
    lens = stops - starts
    ends = np.cumsum(lens)
    pos = np.arange(ends[-1] if len(ends) else 0)
    pos += np.repeat(starts - (ends - lens), lens)
    return pos


def _min_terms(vt: sp.csc_matrix, starts: np.ndarray, counts: np.ndarray,
               vals: np.ndarray, offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The min-product terms met by a set of stored entries through the inverted index.

    Entry e (value ``vals[e]``) meets the ``counts[e]`` stored entries of vt at CSC positions
    ``starts[e]``, ``starts[e] + 1``, ... (a run inside one column of vt). Returns ``flat``
    (T,) int64: ``offsets[e]`` plus the row of the met entry, and ``mins`` (T,):
    min(vals[e], met value).
    """
    pos = _ranges(starts, starts + counts)
    flat = np.repeat(offsets, counts)
    flat += vt.indices[pos]
    mins = np.repeat(vals, counts)
    np.minimum(mins, vt.data[pos], out=mins)
    return flat, mins


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
    step = max(1, max_cells // max(width, 1))
    for lo in range(0, len(rows), step):
        hi = min(lo + step, len(rows))
        e0, e1 = sub.indptr[lo], sub.indptr[hi]
        cols = sub.indices[e0:e1]
        offsets = np.repeat(np.arange(0, (hi - lo) * width, width), np.diff(sub.indptr[lo:hi + 1]))
        flat, mins = _min_terms(vt, vt.indptr[cols], np.diff(vt.indptr)[cols], sub.data[e0:e1],
                                offsets)
        block = np.bincount(flat, mins, minlength=(hi - lo) * width)
        yield lo, hi, block.reshape(hi - lo, width)


def jaccard_from_overlap(overlap: np.ndarray) -> np.ndarray:
    """Jaccard distance 1 - o / (2 - o) of overlaps o of encodings that each sum to 1."""
    return 1.0 - overlap / (2.0 - overlap)


def _csc_positions(v: sp.csr_matrix) -> Tuple[sp.csc_matrix, np.ndarray]:
    """v as CSC (rows ascending within each column) and the CSC position of every stored
    entry of v, in v's CSR order (N,) int64."""
    order = sp.csr_matrix((np.arange(v.nnz, dtype=np.int64), v.indices, v.indptr),
                          shape=v.shape).tocsc()
    positions = np.empty(v.nnz, np.int64)
    positions[order.data] = np.arange(v.nnz)
    vt = sp.csc_matrix((v.data[order.data], order.indices, order.indptr), shape=v.shape)
    return vt, positions


def _upper_block(v: sp.csr_matrix, vt: sp.csc_matrix, start: np.ndarray, count: np.ndarray,
                 lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows lo:hi of the upper triangle: for the pairs (i, j), lo <= i < hi, j >= i, that share
    a column, their columns j (P,) int32 and Jaccard distances (P,) float32 in row-major
    order, and the number of pairs of each row (hi - lo,) int64."""
    width = v.shape[0] - lo
    e0, e1 = v.indptr[lo], v.indptr[hi]
    row_base = np.arange(hi - lo) * width
    offsets = np.repeat(row_base - lo, np.diff(v.indptr[lo:hi + 1]))
    flat, mins = _min_terms(vt, start[e0:e1], count[e0:e1], v.data[e0:e1], offsets)
    del offsets
    block = np.bincount(flat, mins, minlength=(hi - lo) * width)
    del flat, mins
    stored = np.flatnonzero(block != 0)
    bounds = np.searchsorted(stored, np.append(row_base, (hi - lo) * width))
    row_count = np.diff(bounds)
    cols = np.subtract(stored, np.repeat(row_base - lo, row_count), dtype=np.int32,
                       casting="unsafe")
    dist = np.maximum(jaccard_from_overlap(block[stored]), 0.0).astype(np.float32)
    return cols, dist, row_count


def _upper_jaccard_into(v: sp.csr_matrix, data: np.ndarray, indices: np.ndarray,
                        max_cells: int) -> Tuple[np.ndarray, np.ndarray]:
    """The Jaccard distances of the pairs i <= j that share a column of v, as the first
    ``indptr[-1]`` entries of ``data`` (float32) and ``indices`` (int32, j) in row-major
    order; returns that CSR's indptr (N + 1,) int64 and its column counts (N,) int64. The
    buffers must hold ``_upper_term_count(v)`` entries (each pair comes from a term).

    Only the terms with j >= i are enumerated: in column l of the CSC form (rows ascending),
    the stored v[i, l] meets the run that starts at its own position. Row blocks widen as the
    number of columns j >= lo shrinks, each block holding about ``max_cells`` cells.
    """
    num = v.shape[0]
    vt, start = _csc_positions(v)
    count = vt.indptr[1:][v.indices] - start  # rows j >= i stored in column l, i included
    bounds = [0]
    while bounds[-1] < num:
        bounds.append(min(num, bounds[-1] + max(1, max_cells // (num - bounds[-1]))))

    indptr, column_count = np.zeros(num + 1, np.int64), np.zeros(num, np.int64)
    filled = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        cols, dist, row_count = _upper_block(v, vt, start, count, lo, hi)
        end = filled + len(cols)
        indices[filled:end], data[filled:end] = cols, dist
        np.cumsum(row_count, out=indptr[lo + 1:hi + 1])
        indptr[lo + 1:hi + 1] += filled
        column_count += np.bincount(cols, minlength=num)
        filled = end
    return indptr, column_count


def _upper_term_count(v: sp.csr_matrix) -> int:
    """Number of terms (i <= j, l) with v[i, l] and v[j, l] stored: sum_l c_l (c_l + 1) / 2."""
    c = np.bincount(v.indices, minlength=v.shape[1]).astype(np.int64)
    return int((c * (c + 1) // 2).sum())


def _runs_mask(starts: np.ndarray, stops: np.ndarray, size: int) -> np.ndarray:
    """(size,) bool, True on the disjoint runs [starts[r], stops[r])."""
    edges = np.zeros(size + 1, np.int8)
    np.add.at(edges, starts, 1)
    np.add.at(edges, stops, -1)
    return np.cumsum(edges[:-1], dtype=np.int8).view(bool)


def _first_at_least(indices: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    value: int) -> np.ndarray:
    """Per run r: the first position p in [lo[r], hi[r]) with indices[p] >= value (hi[r] if
    none); every run of ``indices`` ascends. A bisection of all runs at once."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        below = open_ & (indices[np.where(open_, mid, 0)] < value)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(open_ & ~below, mid, hi)


def _mirror_in_place(data: np.ndarray, indices: np.ndarray, up_ptr: np.ndarray,
                     column_count: np.ndarray, chunk: int) -> np.ndarray:
    """Turn the upper triangle in the front of ``data`` / ``indices`` (CSR indptr ``up_ptr``,
    column counts ``column_count``) into the whole symmetric matrix in the same buffers, and
    return its indptr (N + 1,) int64: row i is the transposed pairs j < i (column i of the
    upper triangle), then its own pairs j >= i.

    Row i moves from up_ptr[i] to indptr[i] >= up_ptr[i], so going from the last rows back,
    a chunk of rows [c0, c1) (about ``chunk`` output entries) at a time, never overwrites
    pairs still to be read; memory beyond the buffers is one chunk.
    """
    num = len(up_ptr) - 1
    upper_count = np.diff(up_ptr)
    # (i, i) is stored exactly when row i has any pair (its own row of v is not empty)
    lower_count = column_count - (upper_count > 0)
    indptr = np.zeros(num + 1, np.int64)
    np.cumsum(lower_count + upper_count, out=indptr[1:])
    bounds = np.unique(np.concatenate(
        [[0], np.searchsorted(indptr, np.arange(chunk, indptr[-1], max(1, chunk))), [num]]))
    split = up_ptr[1:].copy()  # row r's pairs with columns >= the current c0 start here
    for c0, c1 in zip(bounds[-2::-1], bounds[:0:-1]):
        stop = split[:c1].copy()
        split[:c1] = _first_at_least(indices, up_ptr[:c1], stop, c0)
        pos = _ranges(split[:c1], stop)  # pairs (j, i), j < c1, c0 <= i < c1, row-major
        sizes = np.append(0, np.cumsum(stop - split[:c1]))
        lower = sp.csr_matrix((data[pos], indices[pos] - c0, sizes), shape=(c1, c1 - c0))
        del pos
        lower = lower.tocsc()  # column i - c0: the pairs (j, i), j ascending, (i, i) last
        own = data[up_ptr[c0]:up_ptr[c1]].copy(), indices[up_ptr[c0]:up_ptr[c1]].copy()
        r0, r1 = indptr[c0], indptr[c1]
        row0 = indptr[c0:c1] - r0
        # column i of the transpose fills the start of row i; its last entry, (i, i), lands on
        # the first slot of row i's own pairs, which the second write fills with the same value
        for (part_data, part_indices), first, last in (
                ((lower.data, lower.indices), row0, row0 + column_count[c0:c1]),
                (own, row0 + lower_count[c0:c1], indptr[c0 + 1:c1 + 1] - r0)):
            slots = _runs_mask(first, last, r1 - r0)
            data[r0:r1][slots], indices[r0:r1][slots] = part_data, part_indices
    return indptr


def sparse_jaccard(v: sp.csr_matrix, max_cells: int = 1 << 20,
                   chunk: int = 1 << 21) -> sp.csr_matrix:
    """(N, N) float32 CSR Jaccard distance between the rows of v (N, N), each summing to 1.

    A pair is stored when its rows share a column of v (overlap > 0); absent pairs have
    distance 1. Values are clipped at 0; column indices ascend within each row.

    The distance is symmetric: the pairs i <= j are computed (``_upper_jaccard_into``) into the
    front of the output buffers and mirrored in place (``_mirror_in_place``, ``chunk`` output
    entries at a time). Memory beyond the output: a block of ``max_cells`` cells, then a chunk.
    Everything runs on one thread (numpy's gathers, ``repeat`` and weighted ``bincount`` do
    not overlap in Python threads; measured on numpy 2.4).
    """
    v = v.tocsr()
    if not v.has_canonical_format:
        v = v.copy()
        v.sum_duplicates()
    num = v.shape[0]
    bound = min(_upper_term_count(v), num * (num + 1) // 2)
    # reserved at twice the bound and shrunk in place at the end: only used pages are touched
    data, indices = np.empty(2 * bound, np.float32), np.empty(2 * bound, np.int32)
    up_ptr, column_count = _upper_jaccard_into(v, data, indices, max_cells)
    indptr = _mirror_in_place(data, indices, up_ptr, column_count, chunk)
    data.resize(indptr[-1], refcheck=False)
    indices.resize(indptr[-1], refcheck=False)
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
