"""Quality of pseudo-labels against the hidden true labels (monitoring only, never training).

Outliers (label -1) count as singleton clusters everywhere: they put no pair together, and
NMI / ARI see each as its own cluster (treating all outliers as one cluster would reward
throwing samples away). Pairwise precision / recall / F-score come from the contingency table
(sum of C(n, 2) over its cells, rows and columns), never from the O(N^2) list of pairs.
"""
from __future__ import annotations

from typing import Dict

import numpy as np


def _singletons(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64).copy()
    out = labels < 0
    labels[out] = labels.max(initial=-1) + 1 + np.arange(int(out.sum()))
    return labels


def _pairs(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pairwise_scores(pred: np.ndarray, true: np.ndarray) -> Dict[str, float]:
    """Pairwise precision, recall and F-score of ``pred`` (N,) against ``true`` (N,).

    precision: share of pairs put together by ``pred`` that share a true label; recall: share
    of true same-label pairs that ``pred`` puts together (1.0 when there are no such pairs).
    """
    pred, true = _singletons(pred), np.asarray(true, dtype=np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"pairwise_scores: pred {pred.shape} and true {true.shape} differ")
    _, cells = np.unique(np.stack([pred, true]), axis=1, return_counts=True)
    together = _pairs(cells)
    predicted = _pairs(np.unique(pred, return_counts=True)[1])
    actual = _pairs(np.unique(true, return_counts=True)[1])
    precision = together / predicted if predicted else 1.0
    recall = together / actual if actual else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"pairwise_precision": precision, "pairwise_recall": recall, "pairwise_f": f}


def label_quality(pred: np.ndarray, true: np.ndarray) -> Dict[str, float]:
    """NMI, ARI, pairwise precision / recall / F, number of clusters and outliers of ``pred``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = np.asarray(pred, dtype=np.int64)
    full = _singletons(pred)
    scores = {
        "nmi": float(normalized_mutual_info_score(true, full)),
        "ari": float(adjusted_rand_score(true, full)),
        "num_clusters": int(len(np.unique(pred[pred >= 0]))),
        "num_outliers": int((pred < 0).sum()),
    }
    scores.update(pairwise_scores(pred, true))
    return scores
