"""ROC over (query, gallery) pairs under the Market-1501 removal rule: exact, in one pass.

Pairs: every query against its kept gallery entries (same id *and* camera removed). A pair is
*genuine* (same id) or *impostor* (another id, distractors included). A threshold ``t``
accepts the pairs with distance ``< t``; FPR is the share of impostor pairs accepted and TPR
the share of genuine pairs accepted.

``tpr_at_fpr[f]`` (default, the verification sense): the largest TPR among thresholds whose
FPR is at most ``f``: ``t`` is the ``(floor(f * N_imp) + 1)``-th smallest impostor distance.

``fastreid_compat=True``: FastReID labels genuine pairs 0 and impostor pairs 1, feeds the
distances as scores to scikit-learn's ``roc_curve`` and reports ``tpr[argmin |fpr - f|]``.
On that curve a pair is "positive" when its distance is ``>=`` the threshold, so its "FPR"
is the share of *genuine* pairs rejected and its "TPR" the share of *impostor* pairs
rejected: another operating point (impostors rejected at about ``f`` genuine rejection).
This mode returns that figure: among the curve's genuine-rejection levels (0, and the count
of genuine distances ``>= u`` for each distinct genuine distance ``u``) the one nearest
``f`` (the lower one on a tie, as ``argmin`` takes the first), and the share of impostor
distances ``>= u`` there. It equals FastReID's number unless scikit-learn's
``drop_intermediate`` removes that point, which happens only when the (genuine, impostor)
multiplicities at ``u`` equal those at the next smaller distinct distance (e.g. two hard
genuine pairs with no impostor between them; not seen at dataset scale).

Memory and time: genuine distances are gathered sparsely; impostor distances never are. One
pass over chunks of sorted rows (:mod:`uda_reid.evaluation.protocol`) counts the impostors
below each threshold the result needs and keeps the ``floor(max(fprs) * N_imp) + 1``
smallest impostor distances (4 bytes each), from which the thresholds and the low-FPR part
of the curve are exact.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from uda_reid.evaluation.protocol import ArrayLike, PairIndex, map_chunks, searchsorted_rows


def _accepted_impostors(f: float, num_impostor: int) -> int:
    """floor(f * N) computed exactly for the decimal ``f`` (0.29 * 100 is 29, not 28)."""
    return math.floor(Fraction(repr(f)) * num_impostor)


def _impostor_pass(index: PairIndex, thresholds: np.ndarray, pool_size: int,
                   threads: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(number of impostor distances < each threshold, the ``pool_size`` smallest impostor
    distances sorted ascending)."""
    bound = [np.inf]  # the pool's largest value once full: only smaller candidates matter

    def work(start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
        neg = index.sorted_negatives(start, stop)
        rows = np.arange(stop - start)
        counts = searchsorted_rows(neg, np.repeat(rows, len(thresholds)),
                                   np.tile(thresholds, len(rows)))
        take = np.minimum(index.num_negatives[start:stop], pool_size)
        if np.isfinite(bound[0]):
            limit = np.full(len(rows), bound[0], dtype=neg.dtype)
            take = np.minimum(take, searchsorted_rows(neg, rows, limit))
        cand = np.concatenate([neg[i, :take[i]] for i in rows])
        if cand.size > pool_size:
            cand = np.partition(cand, pool_size - 1)[:pool_size]
        return counts.reshape(len(rows), -1).sum(0), cand

    below = np.zeros(len(thresholds), dtype=np.int64)
    pending: List[np.ndarray] = []
    held = 0
    for counts, cand in map_chunks(work, index.num_query, index.chunk_rows(), threads):
        below += counts
        pending.append(cand)
        held += cand.size
        if pool_size and held > 2 * pool_size:
            pool = np.partition(np.concatenate(pending), pool_size - 1)[:pool_size]
            pending, held, bound[0] = [pool], pool.size, float(pool.max())
    pool = np.sort(np.concatenate(pending))[:pool_size] if pool_size else np.zeros(0)
    return below, pool


def _fastreid_levels(genuine: np.ndarray, fprs: Sequence[float]
                     ) -> List[Optional[float]]:
    """Per ``f``: the genuine distance ``u`` of FastReID's chosen point (None: the curve's
    origin, where no pair is rejected)."""
    values = np.unique(genuine)
    rejected = genuine.size - np.searchsorted(genuine, values, "left")  # descending
    levels = np.r_[0, rejected[::-1]] / genuine.size  # the curve's "fpr", ascending
    thresholds: List[Optional[float]] = [None] + list(values[::-1])
    return [thresholds[int(np.argmin(np.abs(levels - f)))] for f in fprs]


def evaluate_roc(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                 g_camids: ArrayLike, fprs: Sequence[float] = (1e-4, 1e-3, 1e-2),
                 fastreid_compat: bool = False, curve_points: int = 256,
                 threads: Optional[int] = None) -> Dict[str, object]:
    """TPR at given FPRs over all (query, kept gallery) pairs of a (Q, G) distance matrix.

    Returns ``tpr_at_fpr`` ({f: tpr}), ``threshold_at_fpr`` ({f: distance threshold}), a
    downsampled curve ``fpr``/``tpr`` (ascending, from (0, 0) to (1, 1), exact at every
    point; dense below ``max(fprs)``), ``num_genuine``, ``num_impostor`` and the mode
    ``fastreid_compat`` (see the module docstring for both modes).
    """
    fprs = tuple(float(f) for f in fprs)
    if not fprs or any(not 0.0 < f <= 1.0 for f in fprs):
        raise ValueError(f"fprs must be in (0, 1], got {fprs}")
    index = PairIndex(distmat, q_pids, g_pids, q_camids, g_camids)
    genuine = np.sort(index.positives(0, index.num_query)[2])
    n_gen, n_imp = genuine.size, int(index.num_negatives.sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError(f"ROC needs genuine and impostor pairs, got {n_gen} and {n_imp}")
    accepted = [_accepted_impostors(f, n_imp) for f in fprs]
    pool_size = max([k + 1 for k in accepted if k < n_imp], default=0)
    grid = np.unique(genuine[np.linspace(0, n_gen - 1, curve_points).astype(np.int64)])
    compat = _fastreid_levels(genuine, fprs) if fastreid_compat else []
    compat_t = np.array([u for u in compat if u is not None], dtype=genuine.dtype)
    below, pool = _impostor_pass(index, np.r_[grid, compat_t].astype(genuine.dtype),
                                 pool_size, threads)

    tpr_at, threshold_at = {}, {}
    if fastreid_compat:
        below_compat = iter(below[len(grid):])
        for f, u in zip(fprs, compat):
            tpr_at[f] = 0.0 if u is None else (n_imp - int(next(below_compat))) / n_imp
            threshold_at[f] = np.inf if u is None else float(u)
    else:
        for f, k in zip(fprs, accepted):
            t = pool[k] if k < n_imp else np.inf
            tpr_at[f] = float(np.searchsorted(genuine, t, "left")) / n_gen
            threshold_at[f] = float(t)

    ranks = np.unique(np.geomspace(1, max(pool.size, 1), curve_points).astype(np.int64))
    low = pool[ranks - 1] if pool.size else pool  # exact region: thresholds <= pool's max
    thresholds = np.r_[low, grid]
    fpr = np.r_[np.searchsorted(pool, low, "left"), below[:len(grid)]] / n_imp
    tpr = np.searchsorted(genuine, thresholds, "left") / n_gen
    order = np.argsort(thresholds, kind="stable")
    return {"tpr_at_fpr": tpr_at, "threshold_at_fpr": threshold_at,
            "fpr": np.r_[0.0, fpr[order], 1.0], "tpr": np.r_[0.0, tpr[order], 1.0],
            "num_genuine": n_gen, "num_impostor": n_imp, "fastreid_compat": fastreid_compat}
