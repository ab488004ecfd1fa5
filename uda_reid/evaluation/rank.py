"""CMC, mAP and mINP under the Market-1501 protocol (and CUHK03 single-shot), exact and fast.

Protocol: for each query, gallery entries with the query's id *and* camera are removed; every
other entry is kept (other ids and distractors are negatives). A query with no remaining
positive is skipped and counted in ``num_no_match`` (torchreid / FastReID, the default) or,
with ``skip_no_match=False``, scored AP = INP = 0 with no CMC hit (the official Matlab code).

Tie rule: a query's ranked list is its kept gallery sorted by distance, ties broken by
gallery index (the order of ``np.argsort(row, kind="stable")``). Where no positive shares its
distance with a negative this equals the standard definition (torchreid's / FastReID's
``eval_market1501``, whose non-stable ``argsort`` leaves the order of such ties open).

Speed: no row is arg-sorted. Each chunk of rows is value-sorted with the same-id entries
moved to the end (:mod:`uda_reid.evaluation.protocol`); a positive's 0-based rank is the
number of negatives closer than it, plus the negatives at the same distance with a smaller
gallery index (counted only in the rows that have such ties), plus the positives before it.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from uda_reid.evaluation.protocol import ArrayLike, PairIndex, map_chunks, searchsorted_rows

PROTOCOLS = ("market1501", "cuhk03")


def _tied_negatives_before(index: PairIndex, start: int, rows: np.ndarray, cols: np.ndarray,
                           values: np.ndarray) -> np.ndarray:
    """For positives (rows sorted) that tie with a negative: the number of negatives with the
    same distance and a smaller gallery index. One vectorised pass per affected row."""
    num_g = index.num_gallery
    out = np.zeros(len(rows), dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        q = start + rows[a]
        row = index.dist[q]
        tied = np.unique(values[a:b])
        slot = np.minimum(np.searchsorted(tied, row), len(tied) - 1)
        hit = np.flatnonzero((tied[slot] == row) & (index.g_pids != index.q_pids[q]))
        keys = np.sort(slot[hit] * num_g + hit)  # (tied value, gallery index) of negatives
        group = np.searchsorted(tied, values[a:b]) * num_g
        out[a:b] = np.searchsorted(keys, group + cols[a:b]) - np.searchsorted(keys, group)
    return out


def _chunk_ranks(index: PairIndex, start: int, stop: int
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    negatives = index.sorted_negatives(start, stop)
    r, c, d = index.positives(start, stop)
    order = np.lexsort((c, d, r))
    r, c, d = r[order], c[order], d[order]
    k = np.arange(len(r)) - np.searchsorted(r, r)
    below = searchsorted_rows(negatives, r, d)
    next_negative = negatives[r, np.minimum(below, index.num_gallery - 1)]
    tied = np.flatnonzero((below < index.num_negatives[start + r]) & (next_negative == d))
    if len(tied):
        below[tied] += _tied_negatives_before(index, start, r[tied], c[tied], d[tied])
    return start + r, k, below + k


def positive_ranks(index: PairIndex, threads: Optional[int] = None
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, positive) pair with the positive's 0-based rank in the query's kept list.

    Returns ``(query, k, rank)`` int arrays sorted by query then rank, where ``k`` is the
    positive's 0-based order among its query's positives.
    """
    parts = list(map_chunks(lambda s, e: _chunk_ranks(index, s, e), index.num_query,
                            index.chunk_rows(), threads))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore


def _summary(num_pos: np.ndarray, ap: np.ndarray, inp: np.ndarray, first: np.ndarray,
             max_rank: int, skip_no_match: bool) -> Dict[str, object]:
    """Averages over the counted queries; ``first`` is each query's first-hit rank."""
    has_match = num_pos > 0
    counted = has_match if skip_no_match else np.ones_like(has_match)
    if not counted.any():
        raise ValueError("No query has a valid gallery match: check the ids and cameras")
    n = int(counted.sum())
    hits = np.bincount(np.minimum(first[counted], max_rank), minlength=max_rank + 1)
    return {"cmc": np.cumsum(hits[:max_rank]) / n, "mAP": float(ap[counted].sum() / n),
            "mINP": float(inp[counted].sum() / n), "num_valid_queries": int(has_match.sum()),
            "num_no_match": int((~has_match).sum()), "skip_no_match": skip_no_match}


def _market_metrics(index: PairIndex, max_rank: int, skip_no_match: bool,
                    threads: Optional[int]) -> Dict[str, object]:
    rows, k, ranks = positive_ranks(index, threads)
    num_q = index.num_query
    num_pos = np.bincount(rows, minlength=num_q)
    ap = np.bincount(rows, (k + 1) / (ranks + 1), minlength=num_q) / np.maximum(num_pos, 1)
    change = rows[1:] != rows[:-1]
    starts, ends = np.flatnonzero(np.r_[True, change]), np.flatnonzero(np.r_[change, True])
    first = np.full(num_q, max_rank, dtype=np.int64)
    last = np.zeros(num_q)
    if len(rows):
        first[rows[starts]] = ranks[starts]
        last[rows[ends]] = ranks[ends]
    inp = num_pos / (last + 1)
    return _summary(num_pos, ap, inp, first, max_rank, skip_no_match)


def _cuhk03_first_ranks(index: PairIndex, repeats: int, seed: int) -> np.ndarray:
    """(Q, repeats) single-shot first-hit ranks: per query and repeat, one kept gallery image
    drawn uniformly per identity, ranked by the tie rule; -1 for queries with no match."""
    rng = np.random.default_rng(seed)
    out = np.full((index.num_query, repeats), -1, dtype=np.int64)
    for i in np.flatnonzero(index.group_size > 0):
        kept = np.flatnonzero(~((index.g_pids == index.q_pids[i])
                                & (index.g_camids == index.q_camids[i])))
        ids, dense, counts = np.unique(index.g_pids[kept], return_inverse=True,
                                       return_counts=True)
        own = int(np.searchsorted(ids, index.q_pids[i]))
        if own == len(ids) or ids[own] != index.q_pids[i]:
            continue
        shuffle = np.argsort(rng.random((repeats, len(kept))), axis=1)
        by_id = np.take_along_axis(shuffle, np.argsort(dense[shuffle], axis=1, kind="stable"),
                                   axis=1)
        chosen = kept[by_id[:, np.cumsum(counts) - counts]]  # (repeats, ids): one per id
        d = index.dist[i, chosen]
        mine_d, mine_c = d[:, own:own + 1], chosen[:, own:own + 1]
        out[i] = ((d < mine_d) | ((d == mine_d) & (chosen < mine_c))).sum(1)
    return out


def _cuhk03_metrics(index: PairIndex, max_rank: int, skip_no_match: bool, repeats: int,
                    seed: int, threads: Optional[int]) -> Dict[str, object]:
    result = _market_metrics(index, max_rank, skip_no_match, threads)
    first = _cuhk03_first_ranks(index, repeats, seed)
    hits = (first[:, :, None] == np.arange(max_rank)).mean(1).sum(0)
    num_counted = result["num_valid_queries"] if skip_no_match else index.num_query
    result["cmc"] = np.cumsum(hits) / num_counted
    return result


def evaluate_rank(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                  g_camids: ArrayLike, max_rank: int = 50, protocol: str = "market1501",
                  skip_no_match: bool = True, cuhk03_repeats: int = 10, seed: int = 0,
                  threads: Optional[int] = None) -> Dict[str, object]:
    """CMC, mAP and mINP of a (Q, G) distance matrix (smaller is closer).

    ``q_pids``/``q_camids`` (Q,), ``g_pids``/``g_camids`` (G,), numpy or torch. Returns
    ``cmc`` (max_rank,) fractions (``cmc[r]``: share of queries with a positive within the
    first ``r + 1``), ``mAP``, ``mINP`` (fractions), ``num_valid_queries``, ``num_no_match``
    and the ``skip_no_match`` / ``protocol`` used. ``protocol="cuhk03"``: CMC single-shot
    (per query, one random kept gallery image per identity, averaged over ``cuhk03_repeats``
    draws from ``seed``); mAP/mINP as in Market-1501. ``threads``: chunks sorted in
    parallel (default: the machine's cores, at most 8).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    index = PairIndex(distmat, q_pids, g_pids, q_camids, g_camids)
    if protocol == "cuhk03":
        result = _cuhk03_metrics(index, max_rank, skip_no_match, cuhk03_repeats, seed, threads)
    else:
        result = _market_metrics(index, max_rank, skip_no_match, threads)
    result["protocol"] = protocol
    return result
