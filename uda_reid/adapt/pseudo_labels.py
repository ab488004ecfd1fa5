"""Clustering pseudo-labels: k-reciprocal Jaccard distance (SpCL / OpenUnReID / FastReID),
multi-granularity labels, cluster centroids.

The Jaccard distance is the one those code bases cluster on (their dense
``compute_jaccard_distance``):
features are ranked by squared Euclidean distance (an exact flat L2 search returning k1
neighbours, the point itself included), k-reciprocal sets use those k1 ranks (their
``initial_rank[i, :k1 + 1]`` on a k1-column ranking), half sets round(k1 / 2) + 1 ranks, the
2/3 expansion rule, weights softmax(-squared Euclidean distance), local query expansion over
the first k2 ranks, and distance 1 - overlap / (2 - overlap) clipped at 0.

Here the result is a sparse matrix. A pair (i, j) is stored when the encodings of i and j
share a point, and its value is their Jaccard distance (< 1, possibly an explicit 0, e.g. on
the diagonal). **An absent entry means distance 1** (no shared k-reciprocal neighbour), the
largest value. scikit-learn's DBSCAN / NearestNeighbors with ``metric="precomputed"`` read a
sparse matrix exactly this way for any radius eps < 1: stored entries are candidate neighbours,
absent ones are never within eps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch

from uda_reid.adapt.clustering import (
    CLUSTER_BACKENDS,
    ClusteringBackend,
    ClusterResult,
    build_backend,
    cluster,
)
from uda_reid.utils.distributed import main_process_result
from uda_reid.utils.knn import ArrayLike, self_knn
from uda_reid.utils.kreciprocal import (
    feature_pair_distance,
    half_neighbours,
    k_reciprocal_encoding,
    sparse_jaccard,
)


def compute_jaccard_distance(features: ArrayLike, k1: int = 20, k2: int = 6,
                             search_option: str = "auto", use_gpu: bool = False,
                             normalize: bool = True) -> sp.csr_matrix:
    """Sparse (N, N) float32 CSR k-reciprocal Jaccard distance of features (N, D).

    search_option: k-NN backend, ``"auto"`` (faiss on GPU when ``use_gpu`` and a GPU is seen,
    else the blockwise exact torch search), ``"faiss"`` or ``"torch"`` (see
    ``uda_reid.utils.knn.self_knn``). normalize: l2-normalise the features first (the callers
    of the reference code pass l2-normalised features; then Euclidean and cosine ranks agree).
    Absent entries mean distance 1; the diagonal is stored (0).
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"compute_jaccard_distance needs k1 >= 1 and k2 >= 1, got {k1}, {k2}")
    x = torch.as_tensor(features).float()
    if x.dim() != 2:
        raise ValueError(f"compute_jaccard_distance: features must be (N, D), got {tuple(x.shape)}")
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    res = self_knn(x, k1, "l2", backend=search_option, use_gpu=use_gpu)
    pair_sq = feature_pair_distance(x, "l2", res.indices, res.scores)
    v = k_reciprocal_encoding(res.indices, k1, half_neighbours(k1), k2, pair_sq)
    return sparse_jaccard(v)


def cluster_centroids(features: ArrayLike, labels: np.ndarray) -> np.ndarray:
    """(C, D) float32 l2-normalised mean feature of each class 0..C-1 (C = labels.max() + 1).

    Samples labelled -1 are ignored; used to initialise a classifier head per granularity.
    A class with no sample raises (labels must be consecutive).
    """
    x = torch.as_tensor(features).float().cpu().numpy()
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels >= 0
    num = int(labels.max(initial=-1)) + 1
    counts = np.bincount(labels[keep], minlength=num)
    if (counts == 0).any():
        raise ValueError(f"cluster_centroids: classes {np.where(counts == 0)[0][:5].tolist()} "
                         "have no sample; labels must be consecutive 0..C-1")
    members = sp.csr_matrix((np.ones(int(keep.sum()), np.float32),
                             (labels[keep], np.where(keep)[0])), shape=(num, len(x)))
    sums = np.asarray(members @ x)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return sums.astype(np.float32)


def multi_granularity_labels(features: ArrayLike, granularities: Sequence[float],
                             backend: Union[str, ClusteringBackend] = "dbscan",
                             outliers: str = "drop",
                             k1: int = 30, k2: int = 6, search_option: str = "auto",
                             use_gpu: bool = False) -> List[ClusterResult]:
    """One ClusterResult per granularity (e.g. DBSCAN eps values or k-means K values).

    The Jaccard distance is computed once (only for backends that read it) and shared by all
    granularities; features (N, D) are l2-normalised for every backend.
    """
    if len(granularities) == 0:
        raise ValueError("multi_granularity_labels: give at least one granularity")
    if isinstance(backend, str):
        backend = build_backend(backend)
    x = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=1)
    distance = None
    if backend.uses_distance:
        distance = compute_jaccard_distance(x, k1, k2, search_option, use_gpu, normalize=False)
    xn = x.cpu().numpy()
    return [cluster(backend, g, xn, distance, outliers) for g in granularities]


@dataclass
class PseudoLabeler:
    """Features -> pseudo-labels at each granularity; ``from_config`` maps ADAPT.CLUSTER.

    backend: a clustering backend instance (see ``uda_reid.adapt.clustering``).
    """

    backend: ClusteringBackend
    granularities: Tuple[float, ...]
    outliers: str = "drop"
    k1: int = 30
    k2: int = 6
    search_option: str = "auto"
    use_gpu: bool = False

    def __call__(self, features: ArrayLike) -> List[ClusterResult]:
        """The results per granularity; under torch.distributed they are computed once, on
        rank 0, and every rank receives them (the ranks hold the same features)."""
        return main_process_result(lambda: multi_granularity_labels(
            features, self.granularities, self.backend, self.outliers, self.k1, self.k2,
            self.search_option, self.use_gpu))

    @classmethod
    def from_config(cls, cfg) -> "PseudoLabeler":
        """From an ADAPT.CLUSTER section (``uda_reid.config.sections.cluster.ClusterConfig``);
        the backend class picks its own options and granularities from the section."""
        backend, granularities = CLUSTER_BACKENDS.get(cfg.BACKEND).from_config(cfg)
        return cls(backend, tuple(granularities), cfg.OUTLIERS, cfg.K1, cfg.K2, cfg.SEARCH,
                   cfg.USE_GPU)
