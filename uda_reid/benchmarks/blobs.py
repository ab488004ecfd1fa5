"""Synthetic ReID-like features for the benchmarks: Gaussian blobs on the unit sphere."""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np


def sphere_blobs(num: int, dim: int, num_ids: int, noise: float = 3.0,
                 seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(num, dim) float32 l2-normalised features and (num,) int64 identities.

    Each identity is a random unit direction; a sample is that direction plus isotropic noise
    of expected norm ``noise``, normalised, so same-identity cosine is about 1 / (1 + noise^2)
    and different identities are nearly orthogonal, as with trained ReID embeddings.
    Identities have uneven sizes (Zipf-like weights), as in real datasets.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_ids, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, num_ids + 1) ** 0.3
    ids = rng.choice(num_ids, size=num, p=weights / weights.sum())
    feats = np.empty((num, dim), np.float32)
    for s in range(0, num, 8192):
        part = rng.standard_normal((min(8192, num - s), dim)).astype(np.float32)
        part *= noise / np.sqrt(dim)
        part += centers[ids[s:s + 8192]]
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        feats[s:s + len(part)] = part
    return feats, ids.astype(np.int64)


def machine_note() -> str:
    """Cores and load average, printed with results (the machine may be shared)."""
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
