"""Query x gallery distances, computed in chunks of queries."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

METRICS = ("cosine", "euclidean")


def compute_distance(qf: torch.Tensor, gf: torch.Tensor, metric: str = "cosine",
                     chunk: int = 4096) -> np.ndarray:
    """(Q, D), (G, D) -> (Q, G) float32 numpy: ``1 - cos`` or euclidean distance."""
    if metric not in METRICS:
        raise ValueError(f"TEST.METRIC must be one of {METRICS}, got {metric!r}")
    qf, gf = torch.as_tensor(qf).float(), torch.as_tensor(gf).float()
    if metric == "cosine":
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    out = np.empty((qf.shape[0], gf.shape[0]), dtype=np.float32)
    g_sq = (gf ** 2).sum(1)
    for start in range(0, qf.shape[0], chunk):
        q = qf[start:start + chunk]
        if metric == "cosine":
            d = 1 - q @ gf.t()
        else:
            d = ((q ** 2).sum(1, keepdim=True) + g_sq[None] - 2 * q @ gf.t()).clamp_min(0).sqrt()
        out[start:start + len(q)] = d.numpy()
    return out
