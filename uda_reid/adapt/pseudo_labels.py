"""k-reciprocal Jaccard distance for clustering pseudo-labels (SpCL / OpenUnReID / FastReID).

The definition is the one those code bases cluster on (their dense ``compute_jaccard_distance``):
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

import numpy as np
import scipy.sparse as sp
import torch

from uda_reid.utils.knn import ArrayLike, self_knn
from uda_reid.utils.kreciprocal import (
    feature_pair_distance,
    half_neighbours,
    jaccard_from_overlap,
    k_reciprocal_encoding,
    min_overlap,
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
    overlap = min_overlap(v)
    dist = np.maximum(jaccard_from_overlap(overlap.data), 0.0).astype(np.float32)
    # built from the arrays (not by arithmetic on the matrix) so explicit zeros stay stored
    return sp.csr_matrix((dist, overlap.indices, overlap.indptr), shape=overlap.shape)
