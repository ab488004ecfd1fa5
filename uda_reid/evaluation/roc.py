"""ROC over (query, gallery) pairs under the Market-1501 removal rule, exact and chunked.

Pairs: every query against its kept gallery entries (same id *and* camera removed). A pair is
*genuine* (same id) or *impostor* (different id). In the verification sense used here, a
threshold ``t`` accepts pairs with distance ``<= t``; ``FPR`` is the share of impostor pairs
accepted and ``TPR`` the share of genuine pairs accepted.

FastReID's ``evaluate_roc`` labels genuine pairs 0 and impostor pairs 1 and feeds the
distances as scores to scikit-learn's ``roc_curve``. Its "TPR@FPR=f" is therefore the share
of *impostor* pairs rejected when a share ``f`` of *genuine* pairs is rejected — another
operating point. ``fastreid_compat=True`` returns that figure (the point of the exact curve
whose genuine-rejection rate is nearest ``f``; scikit-learn's ``drop_intermediate`` may pick a
neighbouring point) so results can be compared with FastReID's published numbers.

Nothing of size Q x G beyond one chunk of rows is held, and no list of all pair scores is
sorted: the impostor threshold is found by a histogram pass and an exact selection inside
one bin.
"""
from __future__ import annotations

from typing import Dict, Iterator, Sequence, Tuple

import numpy as np

from uda_reid.evaluation.rank import ArrayLike, _check, _np

BINS = 1 << 16


def _pair_chunks(dist: np.ndarray, q_pids, g_pids, q_camids, g_camids, chunk: int = 256
                 ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield (genuine distances, impostor distances) for chunks of queries."""
    for start in range(0, dist.shape[0], chunk):
        rows = slice(start, start + chunk)
        d = np.asarray(dist[rows], dtype=np.float32)
        same_id = q_pids[rows, None] == g_pids[None, :]
        genuine = same_id & (q_camids[rows, None] != g_camids[None, :])
        yield d[genuine], d[~same_id]


def _kth_smallest(chunks, k: int, lo: float, hi: float, dist_args) -> float:
    """The k-th smallest (0-based) impostor distance: a histogram pass, then the one bin."""
    edges = np.linspace(lo, hi, BINS + 1)
    counts = np.zeros(BINS, dtype=np.int64)
    for _, imp in chunks(*dist_args):
        counts += np.histogram(imp, edges)[0]
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, k, side="right"))
    before = int(cum[b - 1]) if b else 0
    inside = [imp[(imp >= edges[b]) & ((imp < edges[b + 1]) if b < BINS - 1 else True)]
              for _, imp in chunks(*dist_args)]
    values = np.concatenate(inside)
    return float(np.partition(values, k - before)[k - before])


def evaluate_roc(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                 g_camids: ArrayLike, fprs: Sequence[float] = (1e-4, 1e-3, 1e-2),
                 fastreid_compat: bool = False, curve_points: int = 512) -> Dict[str, object]:
    """``tpr_at_fpr`` {fpr: tpr} and a downsampled ``fpr``/``tpr`` curve for plotting.

    Verification sense (default): the threshold accepts the given share of impostor pairs
    (the ``ceil(f * N_imp)``-th smallest impostor distance); TPR is the share of genuine pairs
    within it. ``fastreid_compat``: see the module docstring.
    """
    dist = _np(distmat)
    q_pids, g_pids, q_camids, g_camids = map(_np, (q_pids, g_pids, q_camids, g_camids))
    _check(dist, q_pids, g_pids, q_camids, g_camids)
    args = (dist, q_pids, g_pids, q_camids, g_camids)
    genuine_parts, n_imp, lo, hi = [], 0, np.inf, -np.inf
    for gen, imp in _pair_chunks(*args):
        genuine_parts.append(gen)
        n_imp += imp.size
        if imp.size:
            lo, hi = min(lo, float(imp.min())), max(hi, float(imp.max()))
    genuine = np.sort(np.concatenate(genuine_parts))
    if genuine.size == 0 or n_imp == 0:
        raise ValueError("ROC needs both genuine (same id) and impostor pairs")
    lo, hi = min(lo, float(genuine[0])), max(hi, float(genuine[-1]))
    hi = np.nextafter(hi, np.inf) if hi > lo else lo + 1.0
    result: Dict[str, object] = {"num_genuine": int(genuine.size), "num_impostor": n_imp,
                                 "fastreid_compat": fastreid_compat}
    tpr_at = {}
    for f in fprs:
        if fastreid_compat:
            j = int(round(f * genuine.size))  # genuine pairs rejected: the j largest
            t = genuine[genuine.size - j] if j > 0 else np.nextafter(genuine[-1], np.inf)
            rejected = sum(int((imp >= t).sum()) for _, imp in _pair_chunks(*args))
            tpr_at[float(f)] = rejected / n_imp
        else:
            k = max(int(np.ceil(f * n_imp)), 1) - 1
            t = _kth_smallest(_pair_chunks, k, lo, hi, args)
            tpr_at[float(f)] = float(np.searchsorted(genuine, t, side="right")) / genuine.size
    result["tpr_at_fpr"] = tpr_at
    edges = np.linspace(lo, hi, curve_points + 1)
    imp_counts = np.zeros(curve_points, dtype=np.int64)
    for _, imp in _pair_chunks(*args):
        imp_counts += np.histogram(imp, edges)[0]
    result["fpr"] = np.concatenate([[0.0], np.cumsum(imp_counts) / n_imp])
    result["tpr"] = np.concatenate([[0.0], np.histogram(genuine, edges)[0].cumsum()
                                    / genuine.size])
    return result
