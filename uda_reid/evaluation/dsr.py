"""Deep spatial reconstruction (DSR) distance for partial ReID (He et al., CVPR 2018).

A query's spatial feature map is reconstructed from the columns of a gallery map by
l2-regularised least squares; the distance is the mean reconstruction error over the query's
positions. Shapes: query maps (Q, C, Hq, Wq), gallery maps (G, C, Hg, Wg).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def dsr_distance(q_maps: torch.Tensor, g_maps: torch.Tensor, lam: float = 1e-3,
                 normalize: bool = True) -> np.ndarray:
    """(Q, G) numpy: ``mean_j || x_j - Y w_j ||`` with ``w_j = (Y^T Y + lam I)^-1 Y^T x_j``,
    ``x_j`` the query's position vectors, ``Y`` the gallery's (C, Hg Wg) matrix."""
    q = q_maps.float().flatten(2)  # (Q, C, Nq)
    g = g_maps.float().flatten(2)  # (G, C, Ng)
    if normalize:
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    eye = torch.eye(g.shape[2], dtype=g.dtype)
    gram_inv = torch.linalg.inv(g.transpose(1, 2) @ g + lam * eye)  # (G, Ng, Ng)
    projector = g @ gram_inv @ g.transpose(1, 2)  # (G, C, C): Y (Y^T Y + lam I)^-1 Y^T
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for i in range(q.shape[0]):
        residual = q[i][None] - projector @ q[i][None]  # (G, C, Nq)
        out[i] = residual.norm(dim=1).mean(dim=1).numpy()
    return out
