"""Deep spatial feature reconstruction (DSR) distance for partial ReID (He et al., CVPR 2018).

A query's spatial feature map ``X`` (C, Nq) is reconstructed from the position vectors of a
gallery map ``Y`` (C, Ng) by least squares with an l2 penalty (the closed-form variant that
FastReID uses in place of the paper's sparse coding)::

    W = (Y^T Y + lam I)^-1 Y^T X        (Ng, Nq)
    d(X, Y) = sum_n a_n || x_n - Y w_n ||

with position weights ``a_n`` (default ``1 / Nq``; FastReID sums with per-position visibility
scores). A partial query that shows part of the gallery person is reconstructed well however
the parts are arranged, so no alignment is needed.

The projectors ``(Y^T Y + lam I)^-1 Y^T`` (G, Ng, C) are computed once per gallery map;
(query, gallery) pairs are then evaluated in batches. All pairs cost ``Q * G * C * Ng * Nq``
multiply-adds, so at dataset scale pass ``candidates`` (e.g. the top 100 by global distance,
as FastReID does) and only those pairs are computed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from uda_reid.evaluation.protocol import CHUNK_ELEMENTS, ArrayLike


def _flatten(maps: ArrayLike, name: str) -> torch.Tensor:
    x = torch.as_tensor(maps).float()
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be (N, C, H, W) or (N, C, L), got {tuple(x.shape)}")
    return x.flatten(2)


@torch.no_grad()
def dsr_projectors(g: torch.Tensor, lam: float) -> torch.Tensor:
    """(G, C, Ng) gallery maps -> (G, Ng, C) ridge projectors ``(Y^T Y + lam I)^-1 Y^T``."""
    eye = torch.eye(g.shape[2], dtype=g.dtype, device=g.device)
    out = torch.empty(g.shape[0], g.shape[2], g.shape[1], dtype=g.dtype, device=g.device)
    step = max(1, CHUNK_ELEMENTS // (g.shape[1] * g.shape[2]))
    for s in range(0, g.shape[0], step):
        y = g[s:s + step]
        yt = y.transpose(1, 2)
        out[s:s + step] = torch.linalg.solve(yt @ y + lam * eye, yt)
    return out


@torch.no_grad()
def dsr_distance(q_maps: ArrayLike, g_maps: ArrayLike, lam: float = 1e-3,
                 q_weights: Optional[ArrayLike] = None, candidates: Optional[ArrayLike] = None,
                 normalize: bool = True) -> np.ndarray:
    """(Q, G) float32 DSR distances between query maps (Q, C, Hq, Wq) and gallery maps
    (G, C, Hg, Wg) (or (N, C, L) position lists).

    ``normalize``: l2-normalise each position vector first. ``q_weights`` (Q, Hq * Wq):
    position weights (default uniform ``1 / (Hq * Wq)``). ``candidates`` (Q, K) gallery
    indices: only those pairs are computed, every other entry is ``+inf``.
    """
    if lam <= 0:
        raise ValueError(f"DSR regularisation lam must be > 0, got {lam}")
    q, g = _flatten(q_maps, "q_maps"), _flatten(g_maps, "g_maps")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_maps and g_maps have different channels: {q.shape[1]} vs "
                         f"{g.shape[1]}")
    if normalize:
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    num_q, num_g = q.shape[0], g.shape[0]
    weights = (torch.full((num_q, q.shape[2]), 1.0 / q.shape[2]) if q_weights is None
               else torch.as_tensor(q_weights).float().reshape(num_q, q.shape[2]))
    weights, g = weights.to(q.device), g.to(q.device)
    if candidates is None:
        q_idx = torch.arange(num_q).repeat_interleave(num_g)
        g_idx = torch.arange(num_g).repeat(num_q)
        out = np.empty((num_q, num_g), dtype=np.float32)
    else:
        cand = torch.as_tensor(candidates).long()
        if cand.ndim != 2 or cand.shape[0] != num_q:
            raise ValueError(f"candidates must be (Q={num_q}, K), got {tuple(cand.shape)}")
        q_idx, g_idx = torch.arange(num_q).repeat_interleave(cand.shape[1]), cand.reshape(-1)
        out = np.full((num_q, num_g), np.inf, dtype=np.float32)
    proj = dsr_projectors(g, lam)
    step = max(1, CHUNK_ELEMENTS // (q.shape[1] * max(q.shape[2], g.shape[2])))
    for s in range(0, len(q_idx), step):
        qi, gi = q_idx[s:s + step], g_idx[s:s + step]
        x = q[qi]  # (B, C, Nq)
        residual = x - g[gi] @ (proj[gi] @ x)
        out[qi.numpy(), gi.numpy()] = (residual.norm(dim=1) * weights[qi]).sum(1).cpu().numpy()
    return out
