"""Exact k-nearest-neighbour search.

Two backends give the same neighbours (up to the order of exactly tied distances):

- ``faiss``: flat (exhaustive) ``IndexFlatL2`` / ``IndexFlatIP``, moved to the GPUs when faiss
  was built with GPU support, GPUs are present and ``use_gpu=True``.
- ``torch``: a blockwise search with ``torch.mm`` on the tensor's device. For a set searched
  against itself it visits each pair of blocks once (half the multiply-adds of a flat index) and
  can return, from the same pass, the farthest neighbour of every point and one dense
  sub-block of the distance matrix.

Metrics use faiss conventions: ``"l2"`` scores are squared Euclidean distances (smaller is
nearer), ``"ip"`` scores are inner products (larger is nearer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
Block = Tuple[slice, slice]
METRICS = ("l2", "ip")
BACKENDS = ("auto", "faiss", "torch")


@dataclass
class KnnResult:
    """Neighbours of N points.

    scores: (N, k) float32, best first (squared L2 ascending, or inner product descending).
    indices: (N, k) int64.
    farthest: (N,) float32 score of the farthest point (max squared L2 / min inner product), or
        None when not asked for.
    block: the requested dense sub-block of the (N, N) score matrix, float32 numpy, or None.
    """

    scores: np.ndarray
    indices: np.ndarray
    farthest: Optional[np.ndarray] = None
    block: Optional[np.ndarray] = None


def faiss_gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _check(metric: str, backend: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"k-NN metric must be one of {METRICS}, got {metric!r}")
    if backend not in BACKENDS:
        raise ValueError(f"k-NN backend must be one of {BACKENDS}, got {backend!r}")


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    return t.float().contiguous()


def _faiss_index(dim: int, metric: str, use_gpu: bool):
    import faiss

    index = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
    if use_gpu and faiss_gpu_available():
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def _faiss_search(queries: np.ndarray, database: np.ndarray, k: int, metric: str,
                  use_gpu: bool) -> Tuple[np.ndarray, np.ndarray]:
    index = _faiss_index(database.shape[1], metric, use_gpu)
    index.add(database)
    scores, indices = index.search(queries, k)
    return scores.astype(np.float32), indices.astype(np.int64)


def _scores(a: torch.Tensor, b: torch.Tensor, metric: str, sq_a: Optional[torch.Tensor],
            sq_b: Optional[torch.Tensor]) -> torch.Tensor:
    """(n, m) scores between rows of a and b: squared L2 or inner product.

    Squared L2 is |a|^2 + |b|^2 - 2 <a, b> with the |b|^2 term and the factor fused into the
    matrix product; rounding can leave tiny negative values (clamped by the callers' outputs).
    """
    if metric == "ip":
        return a @ b.T
    return torch.addmm(sq_b[None, :], a, b.T, alpha=-2.0).add_(sq_a[:, None])


def _overlap(a: range, b: slice) -> Optional[Tuple[int, int]]:
    lo, hi = max(a.start, b.start), min(a.stop, b.stop)
    return (lo, hi) if lo < hi else None


def _copy_block(out: np.ndarray, keep: Block, rows: range, cols: range, s: torch.Tensor) -> None:
    """Copy the part of ``s`` (scores of ``rows`` x ``cols``) that falls into ``keep``."""
    r, c = _overlap(rows, keep[0]), _overlap(cols, keep[1])
    if r is None or c is None:
        return
    part = s[r[0] - rows.start:r[1] - rows.start, c[0] - cols.start:c[1] - cols.start]
    out[r[0] - keep[0].start:r[1] - keep[0].start,
        c[0] - keep[1].start:c[1] - keep[1].start] = part.cpu().numpy()


class _RowBlockTopK:
    """Running top-k (and extreme score) of one block of rows, fed column block by block.

    Candidates are collected and reduced every ``merge_every`` blocks, so that few small
    tensor operations run per block (each costs a thread-pool round trip, which is what
    dominates on a loaded machine).
    """

    def __init__(self, k: int, largest: bool, merge_every: int = 16) -> None:
        self.k, self.largest, self.merge_every = k, largest, merge_every
        self.scores: list = []
        self.indices: list = []
        self.extremes: list = []

    def add(self, block: torch.Tensor, offset: int, extreme: bool) -> None:
        s, i = torch.topk(block, min(self.k, block.shape[1]), dim=1, largest=self.largest,
                          sorted=False)
        self.scores.append(s)
        self.indices.append(i.add_(offset))
        if extreme:
            self.extremes.append(block.min(1).values if self.largest else block.max(1).values)
        if len(self.scores) >= self.merge_every:
            self._merge(sort=False)

    def _merge(self, sort: bool) -> None:
        s, i = torch.cat(self.scores, dim=1), torch.cat(self.indices, dim=1)
        top, pos = torch.topk(s, min(self.k, s.shape[1]), dim=1, largest=self.largest,
                              sorted=sort)
        self.scores, self.indices = [top], [torch.gather(i, 1, pos)]
        if self.extremes:
            e = torch.stack(self.extremes, dim=1)
            self.extremes = [e.min(1).values if self.largest else e.max(1).values]

    def result(self) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        self._merge(sort=True)
        return self.scores[0], self.indices[0], self.extremes[0] if self.extremes else None


def _torch_self_knn(x: torch.Tensor, k: int, metric: str, farthest: bool, keep: Optional[Block],
                    block_size: int) -> KnnResult:
    n = x.shape[0]
    sq = (x * x).sum(1) if metric == "l2" else None
    starts = list(range(0, n, block_size))
    acc = [_RowBlockTopK(k, largest=metric == "ip") for _ in starts]
    out = None
    if keep is not None:
        out = np.empty((keep[0].stop - keep[0].start, keep[1].stop - keep[1].start), np.float32)
    for bi, i0 in enumerate(starts):
        rows = range(i0, min(i0 + block_size, n))
        xi = x[rows.start:rows.stop]
        sqi = sq[rows.start:rows.stop] if sq is not None else None
        for bj in range(bi, len(starts)):
            cols = range(starts[bj], min(starts[bj] + block_size, n))
            sqj = sq[cols.start:cols.stop] if sq is not None else None
            s = _scores(xi, x[cols.start:cols.stop], metric, sqi, sqj)
            # the transposed side is made contiguous: row-wise top-k / max are much faster
            sides = [(bi, rows, cols, s)]
            if bj != bi:
                sides.append((bj, cols, rows, s.T.contiguous()))
            for b, r, c, block in sides:
                acc[b].add(block, c.start, farthest)
                if out is not None:
                    _copy_block(out, keep, r, c, block)
    parts = [a.result() for a in acc]
    scores = torch.cat([p[0] for p in parts])
    indices = torch.cat([p[1] for p in parts])
    far = torch.cat([p[2] for p in parts]) if farthest else None
    if metric == "l2":
        scores.clamp_(min=0.0)
        far = far.clamp_(min=0.0) if far is not None else None
        if out is not None:
            np.maximum(out, 0.0, out=out)
    return KnnResult(scores.cpu().numpy(), indices.cpu().numpy(),
                     far.cpu().numpy() if far is not None else None, out)


def _faiss_farthest(x: np.ndarray, metric: str, use_gpu: bool) -> np.ndarray:
    """Farthest score of every row of x among all rows, by a max-inner-product search."""
    if metric == "ip":
        s, _ = _faiss_search(-x, x, 1, "ip", use_gpu)
        return -s[:, 0]
    sq = (x.astype(np.float64) ** 2).sum(1)
    # max_j |x_i - x_j|^2 = |x_i|^2 + max_j (<-2 x_i, x_j> + |x_j|^2)
    db = np.hstack([x, sq[:, None].astype(np.float32)])
    q = np.hstack([-2.0 * x, np.ones((len(x), 1), np.float32)])
    s, _ = _faiss_search(q, db, 1, "ip", use_gpu)
    return np.maximum(s[:, 0] + sq.astype(np.float32), 0.0)


def knn(queries: ArrayLike, database: ArrayLike, k: int, metric: str = "l2",
        backend: str = "auto", use_gpu: bool = False,
        block_size: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each query row in ``database``.

    queries: (Q, D); database: (M, D). Returns scores (Q, k) float32 and indices (Q, k) int64,
    best first; k is capped at M. ``auto`` uses faiss.
    """
    _check(metric, backend)
    q, db = _as_tensor(queries), _as_tensor(database)
    k = min(k, db.shape[0])
    if backend in ("auto", "faiss"):
        return _faiss_search(q.cpu().numpy(), db.cpu().numpy(), k, metric, use_gpu)
    sq_db = (db * db).sum(1) if metric == "l2" else None
    out_s, out_i = [], []
    for i0 in range(0, q.shape[0], block_size):
        qi = q[i0:i0 + block_size]
        sqi = (qi * qi).sum(1) if metric == "l2" else None
        acc = _RowBlockTopK(k, largest=metric == "ip")
        for j0 in range(0, db.shape[0], block_size):
            sqj = sq_db[j0:j0 + block_size] if sq_db is not None else None
            acc.add(_scores(qi, db[j0:j0 + block_size], metric, sqi, sqj), j0, extreme=False)
        scores, indices, _ = acc.result()
        out_s.append((scores.clamp_(min=0.0) if metric == "l2" else scores).cpu().numpy())
        out_i.append(indices.cpu().numpy())
    return np.concatenate(out_s), np.concatenate(out_i)


def self_knn(x: ArrayLike, k: int, metric: str = "l2", farthest: bool = False,
             keep: Optional[Block] = None, backend: str = "auto", use_gpu: bool = False,
             block_size: int = 4096) -> KnnResult:
    """Exact k nearest neighbours of every row of x (N, D) among all rows (itself included).

    farthest: also return each row's farthest score (needed for column-max normalisation).
    keep: ``(rows, cols)`` slices of the (N, N) score matrix to return densely (float32).
    backend ``auto``: faiss on the GPUs when ``use_gpu`` and faiss sees a GPU, otherwise the
    blockwise torch search (on x's device), which shares each block between both its sides.
    k is capped at N.
    """
    _check(metric, backend)
    xt = _as_tensor(x)
    k = min(k, xt.shape[0])
    if keep is not None:
        keep = tuple(slice(*s.indices(xt.shape[0])[:2]) for s in keep)
    if backend == "auto":
        backend = "faiss" if use_gpu and faiss_gpu_available() else "torch"
    if backend == "torch":
        return _torch_self_knn(xt, k, metric, farthest, keep, block_size)
    xn = xt.cpu().numpy()
    scores, indices = _faiss_search(xn, xn, k, metric, use_gpu)
    far = _faiss_farthest(xn, metric, use_gpu) if farthest else None
    out = None
    if keep is not None:
        sq = (xt * xt).sum(1) if metric == "l2" else None
        a, b = xt[keep[0]], xt[keep[1]]
        out = _scores(a, b, metric, sq[keep[0]] if sq is not None else None,
                      sq[keep[1]] if sq is not None else None)
        out = (out.clamp_(min=0.0) if metric == "l2" else out).cpu().numpy()
    return KnnResult(scores, indices, far, out)
