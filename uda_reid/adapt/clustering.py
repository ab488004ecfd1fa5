"""Clustering backends for pseudo-labels, behind one interface.

A backend is a registered class with a plain constructor (its fixed options),
``from_config(cfg) -> (backend, granularities)`` for an ADAPT.CLUSTER section, and
``__call__(granularity, features, distance) -> labels (N,) int64`` with -1 for outliers. The
granularity is the parameter that sets how fine the clusters are: DBSCAN's ``eps``, HDBSCAN's
``min_cluster_size``, k-means' number of clusters. ``uses_distance`` says whether the backend
reads the sparse Jaccard distance (then callers compute it once for all granularities) or the
features.

``cluster()`` runs a backend and applies the outlier policy; its ``ClusterResult`` reports the
number of clusters and outliers and, for a degenerate result (everything an outlier, or a single
cluster), a message instead of an exception, so an adaptation epoch can log it and go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Tuple, Union

import numpy as np
import scipy.sparse as sp

from uda_reid.utils.registry import Registry

CLUSTER_BACKENDS = Registry("clustering backend")
OUTLIER_POLICIES = ("drop", "singleton")


class ClusteringBackend(Protocol):
    """What ``cluster`` and ``multi_granularity_labels`` need from a backend."""

    uses_distance: bool

    def __call__(self, granularity: float, features: Optional[np.ndarray],
                 distance: Optional[sp.spmatrix]) -> np.ndarray: ...


@dataclass
class ClusterResult:
    """labels: (N,) int64 after the outlier policy (-1 = outlier kept out under ``drop``).

    num_clusters: real clusters (outliers excluded); num_outliers: samples the backend left
    out; num_classes: classes the labels define (``num_clusters`` plus one per outlier under
    ``singleton``); degenerate: why the result is unusable for training, or None.
    """

    labels: np.ndarray
    num_clusters: int
    num_outliers: int
    num_classes: int
    degenerate: Optional[str] = None


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _require(name: str, value: object, what: str) -> None:
    if value is None:
        raise ValueError(f"clustering backend '{name}' needs {what}")


def entries_within(distance: sp.spmatrix, radius: float) -> sp.csr_matrix:
    """The stored entries <= radius of a sparse distance (N, N), explicit zeros kept.

    DBSCAN never looks past its eps, so this only drops work (scikit-learn sorts every row).
    """
    d = distance.tocsr()
    keep = d.data <= radius
    rows = np.repeat(np.arange(d.shape[0]), np.diff(d.indptr))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=d.shape[0]))])
    return sp.csr_matrix((d.data[keep], d.indices[keep], indptr), shape=d.shape)


@CLUSTER_BACKENDS.register("dbscan")
class DBSCANBackend:
    """scikit-learn DBSCAN on a precomputed (sparse Jaccard) distance; granularity = eps."""

    uses_distance = True

    def __init__(self, min_samples: int = 4, n_jobs: Optional[int] = None) -> None:
        self.min_samples, self.n_jobs = min_samples, n_jobs

    @classmethod
    def from_config(cls, cluster) -> Tuple["DBSCANBackend", Tuple[float, ...]]:
        """Backend and granularities (EPS) from an ADAPT.CLUSTER section."""
        return cls(cluster.MIN_SAMPLES), tuple(cluster.EPS)

    def __call__(self, granularity: float, features: Optional[np.ndarray],
                 distance: Optional[sp.spmatrix]) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        _require("dbscan", distance, "a precomputed distance (e.g. compute_jaccard_distance)")
        if sp.issparse(distance) and not 0.0 < granularity < 1.0:
            raise ValueError(f"dbscan eps={granularity} must lie in (0, 1) on a sparse Jaccard "
                             "distance: absent entries mean distance 1")
        if sp.issparse(distance):
            distance = entries_within(distance, granularity)
        model = DBSCAN(eps=granularity, min_samples=self.min_samples, metric="precomputed",
                       n_jobs=self.n_jobs)
        return model.fit_predict(distance).astype(np.int64)


@CLUSTER_BACKENDS.register("hdbscan")
class HDBSCANBackend:
    """HDBSCAN (the ``hdbscan`` package) on l2-normalised features (Euclidean);
    granularity = min_cluster_size.

    Features rather than the sparse Jaccard distance: HDBSCAN's spanning tree needs a connected
    graph, which a sparse k-reciprocal distance is not.
    """

    uses_distance = False

    def __init__(self, min_samples: Optional[int] = None) -> None:
        self.min_samples = min_samples

    @classmethod
    def from_config(cls, cluster) -> Tuple["HDBSCANBackend", Tuple[float, ...]]:
        """Backend and granularities (MIN_CLUSTER_SIZE) from an ADAPT.CLUSTER section."""
        return cls(cluster.MIN_SAMPLES), tuple(cluster.MIN_CLUSTER_SIZE)

    def __call__(self, granularity: float, features: Optional[np.ndarray],
                 distance: Optional[sp.spmatrix]) -> np.ndarray:
        import hdbscan

        _require("hdbscan", features, "features")
        model = hdbscan.HDBSCAN(min_cluster_size=int(granularity), min_samples=self.min_samples)
        return model.fit_predict(_l2_normalize(features)).astype(np.int64)


def kmeans_pp_seeds(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, D) k-means++ seeds from rows of x (N, D): each next seed drawn with probability
    proportional to the squared distance to the nearest seed so far (a loop over the k seeds)."""
    sq = np.einsum("ij,ij->i", x, x)
    seeds = [int(rng.integers(len(x)))]
    nearest = np.maximum(sq + sq[seeds[0]] - 2.0 * x @ x[seeds[0]], 0.0)
    for _ in range(1, k):
        total = nearest.sum()
        pick = int(rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x)))
        seeds.append(pick)
        np.minimum(nearest, np.maximum(sq + sq[pick] - 2.0 * x @ x[pick], 0.0), out=nearest)
    return np.ascontiguousarray(x[seeds])


@CLUSTER_BACKENDS.register("kmeans", aliases=("k-means",))
class KMeansBackend:
    """faiss k-means on l2-normalised features; granularity = number of clusters.

    spherical: unit-norm centroids and cosine assignment, else plain Euclidean k-means on the
    normalised features (UDAStrongBaseline's ``sbs_trainkmeans.py``). Seeded by k-means++
    (faiss' own random seeding often merges two well-separated clusters); every sample gets its
    nearest centroid (no outliers); empty clusters are dropped. The best of ``nredo`` seeded
    runs (largest total similarity, or smallest squared distance) is kept.
    """

    uses_distance = False

    def __init__(self, niter: int = 20, nredo: int = 1, seed: int = 0,
                 spherical: bool = True) -> None:
        self.niter, self.nredo, self.seed, self.spherical = niter, nredo, seed, spherical

    @classmethod
    def from_config(cls, cluster) -> Tuple["KMeansBackend", Tuple[float, ...]]:
        """Backend and granularities (NUM_CLUSTERS) from an ADAPT.CLUSTER section."""
        return (cls(cluster.KMEANS_ITERS, cluster.KMEANS_REDO, cluster.SEED,
                    cluster.KMEANS_SPHERICAL), tuple(cluster.NUM_CLUSTERS))

    def __call__(self, granularity: float, features: Optional[np.ndarray],
                 distance: Optional[sp.spmatrix]) -> np.ndarray:
        import faiss

        _require("kmeans", features, "features")
        x = _l2_normalize(features)
        k = int(granularity)
        if not 1 <= k <= len(x):
            raise ValueError(f"kmeans: number of clusters {k} must lie in [1, {len(x)}]")
        rng = np.random.default_rng(self.seed)
        best, best_obj = None, -np.inf
        for _ in range(self.nredo):
            km = faiss.Kmeans(x.shape[1], k, niter=self.niter, spherical=self.spherical,
                              verbose=False, min_points_per_centroid=1,
                              seed=int(rng.integers(1 << 30)))
            km.train(x, init_centroids=kmeans_pp_seeds(x, k, rng))
            scores, assign = km.index.search(x, 1)  # similarities, or squared distances
            objective = float(scores.sum()) * (1.0 if self.spherical else -1.0)
            if objective > best_obj:
                best, best_obj = assign[:, 0], objective
        return np.unique(best, return_inverse=True)[1].astype(np.int64)


def build_backend(name: str, **options: object) -> ClusteringBackend:
    """The registered backend ``name`` constructed with its options."""
    return CLUSTER_BACKENDS.get(name)(**options)


def apply_outlier_policy(labels: np.ndarray, policy: str) -> np.ndarray:
    """``drop``: keep -1; ``singleton``: each outlier becomes a new class after the clusters."""
    if policy not in OUTLIER_POLICIES:
        raise ValueError(f"outlier policy must be one of {OUTLIER_POLICIES}, got {policy!r}")
    labels = np.asarray(labels, dtype=np.int64).copy()
    if policy == "singleton":
        out = labels < 0
        labels[out] = labels.max(initial=-1) + 1 + np.arange(int(out.sum()))
    return labels


def summarize(raw: np.ndarray, policy: str) -> ClusterResult:
    """Apply the outlier policy to raw backend labels (-1 outliers) and describe the result."""
    raw = np.asarray(raw, dtype=np.int64)
    num_outliers = int((raw < 0).sum())
    clustered = raw[raw >= 0]
    num_clusters = int(len(np.unique(clustered)))
    degenerate = None
    if num_clusters == 0:
        degenerate = (f"all {len(raw)} samples are outliers: no cluster formed "
                      "(granularity too fine, e.g. eps too small or min_samples too large)")
    elif num_clusters == 1:
        degenerate = (f"a single cluster holds all {len(clustered)} clustered samples "
                      f"({num_outliers} outliers): granularity too coarse")
    labels = apply_outlier_policy(raw, policy)
    num_classes = num_clusters + (num_outliers if policy == "singleton" else 0)
    return ClusterResult(labels, num_clusters, num_outliers, num_classes, degenerate)


def cluster(backend: Union[str, ClusteringBackend], granularity: float,
            features: Optional[np.ndarray] = None, distance: Optional[sp.spmatrix] = None,
            outliers: str = "drop") -> ClusterResult:
    """Run a backend (instance, or registered name with default options) at one granularity."""
    if isinstance(backend, str):
        backend = build_backend(backend)
    return summarize(backend(granularity, features, distance), outliers)
