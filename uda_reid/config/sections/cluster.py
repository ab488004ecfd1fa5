"""ADAPT.CLUSTER section: pseudo-labels by clustering (cluster / mlt methods).

Read by ``uda_reid.adapt.pseudo_labels.PseudoLabeler.from_config``. The granularities used
depend on BACKEND: EPS (dbscan), MIN_CLUSTER_SIZE (hdbscan) or NUM_CLUSTERS (kmeans); one
clustering (and one classifier head in ``mlt``) per value.
"""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class ClusterConfig:
    BACKEND: str = "dbscan"  # dbscan | hdbscan | kmeans
    K1: int = 30  # k-reciprocal Jaccard distance (SpCL / OpenUnReID use k1=30, k2=6)
    K2: int = 6
    SEARCH: str = "auto"  # k-NN backend: auto | faiss | torch
    USE_GPU: bool = False  # faiss GPU index when faiss sees a GPU
    EPS: Tuple[float, ...] = (0.6,)  # dbscan, one value per granularity, in (0, 1)
    MIN_SAMPLES: int = 4  # dbscan / hdbscan
    MIN_CLUSTER_SIZE: Tuple[int, ...] = (5,)  # hdbscan, one value per granularity
    NUM_CLUSTERS: Tuple[int, ...] = (500,)  # kmeans, one value per granularity
    KMEANS_ITERS: int = 20
    KMEANS_REDO: int = 1  # k-means++-seeded runs, the best objective is kept
    # True: spherical k-means (unit-norm centroids, cosine assignment); False: plain k-means
    # on the l2-normalised features (faiss.Kmeans as UDAStrongBaseline's sbs_trainkmeans.py)
    KMEANS_SPHERICAL: bool = True
    SEED: int = 0  # kmeans initialisation
    OUTLIERS: str = "drop"  # drop | singleton
