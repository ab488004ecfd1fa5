"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), exactly as the authors' code computes it, in bounded memory.

The authors' algorithm on the (N, N) matrix D = [[q_q, q_g], [q_g^T, g_g]], N = Q + G:
- original = D ** 2, each column divided by its maximum over all N rows, then transposed
  (for a symmetric D: row i divided by the largest squared distance from point i);
- k-reciprocal sets over the first k1 + 1 ranks, expanded by half sets (round(k1 / 2) + 1 ranks)
  that overlap by more than 2/3; weights exp(-original); local query expansion over k2 ranks;
  Jaccard distance over the encodings (see ``uda_reid.utils.kreciprocal``);
- final = (1 - lambda) * jaccard + lambda * original, on the query x gallery block.

``re_ranking`` takes the three dense blocks and never concatenates them (it reads them column
block by column block); ``re_ranking_features`` takes features and never builds any (N, N)
matrix: neighbours, the per-point maximum and the query x gallery distances come from one
exact blockwise pass (``uda_reid.utils.knn.self_knn``), the encodings are sparse.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from uda_reid.utils.knn import ArrayLike, self_knn
from uda_reid.utils.kreciprocal import (
    PairDistance,
    feature_pair_distance,
    half_neighbours,
    jaccard_from_overlap,
    k_reciprocal_encoding,
    overlap_blocks,
)

RERANK_METRICS = ("euclidean", "cosine")


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"re-ranking needs k1 >= 1 and k2 >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"re-ranking lambda_value must lie in [0, 1], got {lambda_value}")


def _rerank_core(ranks: np.ndarray, pair_distance: PairDistance, original_qg: np.ndarray,
                 k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """Shared tail: encodings, Jaccard of the query rows, blend into ``original_qg`` in place.

    ranks: (N, K) nearest-first; original_qg: (Q, G) normalised original distances (owned).
    """
    num_q = original_qg.shape[0]
    v = k_reciprocal_encoding(ranks, k1 + 1, half_neighbours(k1), k2, pair_distance)
    out = original_qg
    out *= lambda_value
    # pairs without shared neighbours have overlap 0 and Jaccard distance 1
    for lo, hi, overlap in overlap_blocks(v, np.arange(num_q), col_start=num_q):
        out[lo:hi] += (1.0 - lambda_value) * jaccard_from_overlap(overlap)
    return out


class _DenseBlocks:
    """Read access to D = [[q_q, q_g], [q_g^T, g_g]] (N, N) without building it."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.nq, self.ng = q_g.shape
        self.n = self.nq + self.ng

    def columns(self, c0: int, c1: int) -> np.ndarray:
        """D[:, c0:c1] (N, c1 - c0) for a range inside the query or the gallery columns."""
        if c1 <= self.nq:
            return np.vstack([self.q_q[:, c0:c1], self.q_g[c0:c1].T])
        g0, g1 = c0 - self.nq, c1 - self.nq
        return np.vstack([self.q_g[:, g0:g1], self.g_g[:, g0:g1]])

    def column_abs_max(self) -> np.ndarray:
        """(N,) max_r |D[r, c]| for every column c (without an abs() copy of the inputs)."""
        def amax(a: np.ndarray, axis: int) -> np.ndarray:
            return np.maximum(a.max(axis=axis), -a.min(axis=axis))

        cq = np.maximum(amax(self.q_q, 0), amax(self.q_g, 1))
        cg = np.maximum(amax(self.q_g, 0), amax(self.g_g, 0))
        return np.concatenate([cq, cg])

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """D[rows[p], cols[p]] (P,)."""
        out = np.empty(len(rows), np.float32)
        rq, cq = rows < self.nq, cols < self.nq
        for mask, block, r, c in (
            (rq & cq, self.q_q, rows, cols),
            (rq & ~cq, self.q_g, rows, cols - self.nq),
            (~rq & cq, self.q_g, cols, rows - self.nq),
            (~rq & ~cq, self.g_g, rows - self.nq, cols - self.nq),
        ):
            out[mask] = block[r[mask], c[mask]]
        return out


def _as_float32(name: str, a: ArrayLike) -> np.ndarray:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"re_ranking: {name} must be 2-D, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _dense_inputs(q_g_dist: ArrayLike, q_q_dist: ArrayLike, g_g_dist: ArrayLike) -> _DenseBlocks:
    q_g, q_q, g_g = (_as_float32(n, a) for n, a in
                     (("q_g_dist", q_g_dist), ("q_q_dist", q_q_dist), ("g_g_dist", g_g_dist)))
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ValueError(f"re_ranking: shapes q_g {q_g.shape}, q_q {q_q.shape}, g_g {g_g.shape} "
                         f"do not fit (Q, G), (Q, Q), (G, G)")
    return _DenseBlocks(q_g, q_q, g_g)


def dense_neighbours(q_g_dist: ArrayLike, q_q_dist: ArrayLike, g_g_dist: ArrayLike, k: int,
                     block_size: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """The k-NN search of ``re_ranking``: the nearest-first ranks (N, k) int64 of every point
    under the column-normalised squared distance, and the squared column maxima (N,).

    The inputs are as for ``re_ranking``; they are read a (N, block_size) column block at a time.
    """
    blocks = _dense_inputs(q_g_dist, q_q_dist, g_g_dist)
    nq, n = blocks.nq, blocks.n
    col_max = np.square(blocks.column_abs_max())
    k = min(k, n)
    ranks = np.empty((n, k), np.int64)
    starts = list(range(0, nq, block_size)) + list(range(nq, n, block_size))
    for c0 in starts:
        c1 = min(c0 + block_size, nq if c0 < nq else n)
        # rows c0:c1 of the transposed, column-normalised original distance
        rows = np.square(blocks.columns(c0, c1)).T / col_max[c0:c1, None]
        ranks[c0:c1] = torch.topk(torch.from_numpy(rows), k, dim=1, largest=False).indices.numpy()
    return ranks, col_max


def re_ranking(q_g_dist: ArrayLike, q_q_dist: ArrayLike, g_g_dist: ArrayLike, k1: int = 20,
               k2: int = 6, lambda_value: float = 0.3, block_size: int = 1024) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from dense distances, as the authors' code.

    q_g_dist: (Q, G), q_q_dist: (Q, Q), g_g_dist: (G, G) distances (not squared: the algorithm
    squares them). Memory beyond the inputs and the (Q, G) output: a (block_size, N) block and
    the sparse encodings. The order of exactly tied distances may differ from numpy's argsort.
    """
    _check_params(k1, k2, lambda_value)
    blocks = _dense_inputs(q_g_dist, q_q_dist, g_g_dist)
    ranks, col_max = dense_neighbours(blocks.q_g, blocks.q_q, blocks.g_g, max(k1 + 1, k2),
                                      block_size)

    def original(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.square(blocks.entries(cols, rows)) / col_max[rows]

    original_qg = np.square(blocks.q_g) / col_max[:blocks.nq, None]
    return _rerank_core(ranks, original, original_qg, k1, k2, lambda_value)


def _to_squared_distance(scores: np.ndarray, metric: str) -> np.ndarray:
    """k-NN scores -> squared distances: l2 scores already are; ip -> (1 - s)^2."""
    if metric == "euclidean":
        return scores
    return np.square(np.maximum(1.0 - scores, 0.0))


def re_ranking_features(qf: ArrayLike, gf: ArrayLike, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, metric: str = "euclidean",
                        backend: str = "auto", use_gpu: bool = False) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from features qf (Q, D) and gf (G, D).

    Equals ``re_ranking`` on the dense distances of the same features: Euclidean distances for
    ``metric="euclidean"``, cosine distances 1 - <x, y> of l2-normalised features for
    ``"cosine"``. No (N, N) matrix is built: memory is the (Q, G) output, the features and
    O(N * (k1 + k2)) sparse entries. backend / use_gpu choose the k-NN search (see
    ``uda_reid.utils.knn.self_knn``).
    """
    _check_params(k1, k2, lambda_value)
    if metric not in RERANK_METRICS:
        raise ValueError(f"re_ranking_features: metric must be one of {RERANK_METRICS}, "
                         f"got {metric!r}")
    q, g = torch.as_tensor(qf).float(), torch.as_tensor(gf).float()
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"re_ranking_features: qf {tuple(q.shape)} and gf {tuple(g.shape)} "
                         f"must be (Q, D) and (G, D)")
    x = torch.cat([q, g.to(q.device)]).contiguous()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    knn_metric = "l2" if metric == "euclidean" else "ip"
    nq, n = q.shape[0], x.shape[0]
    res = self_knn(x, max(k1 + 1, k2), knn_metric, farthest=True,
                   keep=(slice(0, nq), slice(nq, n)), backend=backend, use_gpu=use_gpu)
    col_max = _to_squared_distance(res.farthest, metric)
    pair_sq = feature_pair_distance(x, knn_metric, res.indices,
                                    _to_squared_distance(res.scores, metric))

    def original(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return pair_sq(rows, cols) / col_max[rows]

    original_qg = _to_squared_distance(res.block, metric)
    original_qg /= col_max[:nq, None]
    return _rerank_core(res.indices, original, original_qg, k1, k2, lambda_value)

