"""CMC, mAP and mINP under the Market-1501 protocol (and CUHK03 single-shot), exact and fast.

Protocol: for each query, gallery entries with the query's id *and* camera are removed;
every other entry is kept (distractors and other ids are negatives). A query whose id has no
remaining gallery entry is skipped (torchreid / FastReID) or, with ``skip_no_match=False``,
counted with AP = INP = 0 and no CMC hit (the official Matlab code).

Tie rule: a negative at exactly the same distance as a positive ranks before it (the
pessimistic order). On inputs without such ties the values equal the standard definition
(torchreid's ``eval_market1501``), which sorts with ``np.argsort``.

Speed: instead of arg-sorting every row of the (Q, G) matrix, each chunk of rows is value-
sorted (SIMD sort) after masking everything but the negatives, and each positive's rank is
its number of negatives below it plus the positives before it.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
           g_camids: np.ndarray) -> None:
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be (num_query, num_gallery), got shape {distmat.shape}")
    q, g = distmat.shape
    for name, arr, n in (("q_pids", q_pids, q), ("q_camids", q_camids, q),
                         ("g_pids", g_pids, g), ("g_camids", g_camids, g)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) to match distmat, got {arr.shape}")


def positive_ranks(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                   q_camids: ArrayLike, g_camids: ArrayLike, chunk: int = 256
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, positive) pair with the positive's 0-based rank in the kept gallery list.

    Returns ``(query_index, k, rank)`` int arrays, sorted by query then rank, where ``k`` is
    the positive's 0-based order among its query's positives.
    """
    dist = _np(distmat)
    q_pids, g_pids, q_camids, g_camids = map(_np, (q_pids, g_pids, q_camids, g_camids))
    _check(dist, q_pids, g_pids, q_camids, g_camids)
    num_g = dist.shape[1]
    out_rows, out_k, out_ranks = [], [], []
    for start in range(0, dist.shape[0], chunk):
        rows = slice(start, min(start + chunk, dist.shape[0]))
        d = np.asarray(dist[rows], dtype=np.float32)
        lo, hi = float(d.min()), float(d.max())
        span = hi - lo + 2.0
        same_id = q_pids[rows, None] == g_pids[None, :]
        positive = same_id & (q_camids[rows, None] != g_camids[None, :])
        # negatives sorted per row; the rest moved past every real distance of the row
        negatives = np.sort(np.where(same_id, np.float32(hi + 1.0), d), axis=1)
        offsets = np.arange(d.shape[0], dtype=np.float64)[:, None] * span - lo
        keys = (negatives + offsets).ravel()  # globally sorted: row by row
        r_idx, c_idx = np.nonzero(positive)
        pos_d = d[r_idx, c_idx]
        order = np.lexsort((pos_d, r_idx))
        r_idx, pos_d = r_idx[order], pos_d[order]
        below = np.searchsorted(keys, pos_d + offsets[r_idx, 0], side="right") - r_idx * num_g
        first = np.searchsorted(r_idx, r_idx, side="left")
        k = np.arange(len(r_idx)) - first
        out_rows.append(r_idx + start)
        out_k.append(k)
        out_ranks.append(below + k)
    return tuple(np.concatenate(a) if a else np.zeros(0, dtype=np.int64)
                 for a in (out_rows, out_k, out_ranks))  # type: ignore[return-value]


def _metrics_from_ranks(num_query: int, rows: np.ndarray, k: np.ndarray, ranks: np.ndarray,
                        max_rank: int, skip_no_match: bool) -> Dict[str, object]:
    num_pos = np.bincount(rows, minlength=num_query)
    has_match = num_pos > 0
    ap = np.bincount(rows, (k + 1) / (ranks + 1), minlength=num_query)
    ap[has_match] /= num_pos[has_match]
    last_rank = np.zeros(num_query)
    last_rank[rows] = ranks  # rows sorted by rank within a query: the last write is the last
    inp = np.where(has_match, num_pos / (last_rank + 1), 0.0)
    first_rank = np.full(num_query, np.iinfo(np.int64).max)
    np.minimum.at(first_rank, rows, ranks)
    cmc = (first_rank[:, None] <= np.arange(max_rank)[None, :]).astype(np.float64)
    counted = has_match if skip_no_match else np.ones(num_query, dtype=bool)
    if not counted.any():
        raise ValueError("No query has a valid gallery match: check the ids and cameras")
    return {"cmc": cmc[counted].mean(0), "mAP": float(ap[counted].mean()),
            "mINP": float(inp[counted].mean()), "num_valid_queries": int(has_match.sum()),
            "num_no_match": int((~has_match).sum()), "skip_no_match": skip_no_match}


def _cuhk03_cmc(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int,
                repeats: int, seed: int) -> np.ndarray:
    """Single-shot CMC: per query and repeat, one random kept gallery image per identity."""
    rng = np.random.default_rng(seed)
    cmc = np.zeros(max_rank)
    counted = 0
    for i in range(distmat.shape[0]):
        keep = ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        if not np.any(keep & (g_pids == q_pids[i])):
            continue
        d, pids = distmat[i][keep], g_pids[keep]
        counted += 1
        for _ in range(repeats):
            chosen = np.array([rng.choice(np.flatnonzero(pids == p)) for p in np.unique(pids)])
            order = chosen[np.argsort(d[chosen], kind="stable")]
            first = int(np.flatnonzero(pids[order] == q_pids[i])[0])
            if first < max_rank:
                cmc[first:] += 1.0 / repeats
    return cmc / max(counted, 1)


def evaluate_rank(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                  g_camids: ArrayLike, max_rank: int = 50, protocol: str = "market1501",
                  skip_no_match: bool = True, cuhk03_repeats: int = 10,
                  seed: int = 0) -> Dict[str, object]:
    """CMC (``cmc``: fractions, length ``max_rank``), ``mAP``, ``mINP`` and query counts.

    ``distmat`` (Q, G), smaller is closer; ids and cameras as 1-D arrays (numpy or torch).
    ``protocol="cuhk03"`` computes CMC single-shot (one random gallery image per identity,
    averaged over ``cuhk03_repeats``), mAP/mINP as in Market-1501.
    """
    if protocol not in ("market1501", "cuhk03"):
        raise ValueError(f"protocol must be 'market1501' or 'cuhk03', got {protocol!r}")
    num_query = _np(q_pids).shape[0]
    result = _metrics_from_ranks(num_query, *positive_ranks(distmat, q_pids, g_pids, q_camids,
                                                            g_camids), max_rank, skip_no_match)
    if protocol == "cuhk03":
        result["cmc"] = _cuhk03_cmc(_np(distmat), *map(_np, (q_pids, g_pids, q_camids, g_camids)),
                                    max_rank, cuhk03_repeats, seed)
    result["protocol"] = protocol
    return result
