"""Query x gallery distances from features, computed in chunks of queries."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from uda_reid.evaluation.protocol import CHUNK_ELEMENTS, ArrayLike

METRICS = ("cosine", "euclidean")


@torch.no_grad()
def compute_distance(qf: ArrayLike, gf: ArrayLike, metric: str = "cosine") -> np.ndarray:
    """(Q, D), (G, D) features -> (Q, G) float32 numpy distances, smaller is closer.

    ``cosine``: ``1 - cos(q, g)`` (in [0, 2]); ``euclidean``: ``||q - g||``. Computed on the
    features' device in chunks of queries (about 16 MiB of output each).
    """
    if metric not in METRICS:
        raise ValueError(f"TEST.METRIC must be one of {METRICS}, got {metric!r}")
    qf, gf = torch.as_tensor(qf).float(), torch.as_tensor(gf).float()
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D), got {tuple(qf.shape)} and "
                         f"{tuple(gf.shape)}")
    if metric == "cosine":
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    g_sq = gf.pow(2).sum(1)
    out = np.empty((qf.shape[0], gf.shape[0]), dtype=np.float32)
    chunk = max(1, CHUNK_ELEMENTS // max(gf.shape[0], 1))
    for start in range(0, qf.shape[0], chunk):
        q = qf[start:start + chunk]
        if metric == "cosine":
            d = 1.0 - q @ gf.t()
        else:
            d = (q.pow(2).sum(1, keepdim=True) + g_sq - 2.0 * q @ gf.t()).clamp_min_(0).sqrt_()
        out[start:start + len(q)] = d.cpu().numpy()
    return out
