"""From query/gallery features to ReID metrics with the options of the ``TEST`` section."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from uda_reid.evaluation.distances import compute_distance
from uda_reid.evaluation.query_expansion import query_expansion
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.roc import evaluate_roc


def retrieval_distance(qf: torch.Tensor, gf: torch.Tensor, options) -> np.ndarray:
    """(Q, G) distances after optional query expansion and k-reciprocal re-ranking."""
    if options.QE.ENABLED:
        qf = query_expansion(qf, gf, options.QE.K, options.QE.ALPHA)
    if options.RERANK.ENABLED:
        from uda_reid.evaluation.rerank import re_ranking_features

        return re_ranking_features(qf, gf, options.RERANK.K1, options.RERANK.K2,
                                   options.RERANK.LAMBDA, metric=options.METRIC)
    return compute_distance(qf, gf, options.METRIC)


def evaluate_features(qf: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor,
                      gf: torch.Tensor, g_pids: torch.Tensor, g_camids: torch.Tensor,
                      options, distmat: Optional[np.ndarray] = None) -> Dict[str, float]:
    """mAP, mINP, rank-1/5/10 (fractions) and, with ``TEST.ROC``, TPR at FPR 1e-4/1e-3/1e-2.

    ``options`` is the ``TEST`` config section (metric, re-ranking, query expansion, ROC,
    max rank, no-match policy). ``distmat`` skips the distance step when given.
    """
    dist = retrieval_distance(qf, gf, options) if distmat is None else distmat
    ranks = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids,
                          max(options.MAX_RANK, 10), skip_no_match=options.SKIP_NO_MATCH)
    cmc = ranks["cmc"]
    metrics = {"mAP": ranks["mAP"], "mINP": ranks["mINP"], "rank1": float(cmc[0]),
               "rank5": float(cmc[4]), "rank10": float(cmc[9]),
               "num_valid_queries": ranks["num_valid_queries"]}
    if options.ROC:
        roc = evaluate_roc(dist, q_pids, g_pids, q_camids, g_camids)
        metrics.update({f"TPR@FPR={f:.0e}": t for f, t in roc["tpr_at_fpr"].items()})
    return metrics
