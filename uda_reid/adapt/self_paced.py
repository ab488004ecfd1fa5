"""SpCL's self-paced refinement of a clustering (Ge et al., NeurIPS 2020, section 3.2; official
code yxgeee/SpCL examples/spcl_train_uda.py).

The target features are clustered at eps and at a tighter (eps - gap) and a looser (eps + gap)
eps. For a sample i let C(i), T(i), L(i) be its clusters at the three (a DBSCAN outlier is a
cluster of its own). Its *independence* is IoU(C(i), L(i)) (a reliable cluster does not merge
with others when eps grows), its *compactness* IoU(C(i), T(i)) (it does not split when eps
shrinks). A cluster is independent when the largest independence of its members reaches the
threshold; in an independent cluster the members whose compactness is the largest of the
cluster's stay, the others become un-clustered instances. As in the official code, the
independence threshold is set once, in the first round (the first with a cluster), so that the
fraction ``quantile`` of the clusters of two or more images passes; the later rounds keep it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from uda_reid.adapt.clustering import apply_outlier_policy


def membership_iou(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(N,) IoU of each sample's cluster under ``labels`` (N,) with its cluster under ``other``
    (N,); -1 (outlier) is a cluster of its own."""
    a = np.unique(apply_outlier_policy(labels, "singleton"), return_inverse=True)[1].ravel()
    b = np.unique(apply_outlier_policy(other, "singleton"), return_inverse=True)[1].ravel()
    size_a = np.bincount(a)[a]
    size_b = np.bincount(b)[b]
    pair = np.unique(a * (b.max() + 1) + b, return_inverse=True)[1].ravel()
    inter = np.bincount(pair)[pair]
    return inter / (size_a + size_b - inter)


def independence_threshold(cluster_independence: np.ndarray, cluster_sizes: np.ndarray,
                           quantile: float) -> Optional[float]:
    """The IoU threshold that the fraction ``quantile`` of the clusters of two or more images
    reaches: with their independences sorted from the largest, the value at position
    ``min(n - 1, round(n * quantile))`` (the official code's index); ``None`` without such
    clusters."""
    values = np.sort(cluster_independence[cluster_sizes > 1])[::-1]
    if len(values) == 0:
        return None
    return float(values[min(len(values) - 1, int(np.round(len(values) * quantile)))])


@dataclass
class SelfPacedResult:
    """labels: (N,) the reliable clusters 0..C-1 (two or more images each), -1 un-clustered;
    threshold: the independence threshold used; rejected_clusters: clusters of two or more
    images not independent; dropped_members: members of independent clusters left out as not
    compact enough."""

    labels: np.ndarray
    threshold: Optional[float]
    rejected_clusters: int
    dropped_members: int


def self_paced_labels(labels: np.ndarray, tight: np.ndarray, loose: np.ndarray,
                      threshold: Optional[float] = None, quantile: float = 0.9
                      ) -> SelfPacedResult:
    """Refine the clusters ``labels`` (N,) (-1 outliers) with those at a tighter and a looser
    eps (N,); ``threshold``: the independence threshold of an earlier round, or ``None`` to set
    it from ``quantile``."""
    labels = np.asarray(labels, dtype=np.int64)
    independence = membership_iou(labels, loose)
    compactness = membership_iou(labels, tight)
    clustered = labels >= 0
    num = int(labels.max(initial=-1)) + 1
    sizes = np.bincount(labels[clustered], minlength=num)
    best_independence = np.zeros(num)
    np.maximum.at(best_independence, labels[clustered], independence[clustered])
    best_compactness = np.zeros(num)
    np.maximum.at(best_compactness, labels[clustered], compactness[clustered])
    if threshold is None:
        threshold = independence_threshold(best_independence, sizes, quantile)
    independent = (np.zeros(num, dtype=bool) if threshold is None
                   else best_independence >= threshold)
    member = labels[clustered]
    keep = clustered.copy()
    keep[clustered] = independent[member] & (compactness[clustered] >= best_compactness[member])
    reliable = np.bincount(labels[keep], minlength=num) > 1  # one kept member is un-clustered
    keep[clustered] &= reliable[member]
    refined = np.full(len(labels), -1, dtype=np.int64)
    refined[keep] = np.cumsum(reliable)[labels[keep]] - 1
    rejected = int(((sizes > 1) & ~independent).sum())
    dropped = int(independent[member].sum() - keep.sum())
    return SelfPacedResult(refined, threshold, rejected, dropped)
