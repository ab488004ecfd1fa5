"""Query expansion: average QE (Chum et al., ICCV 2007), alpha-QE (Radenovic et al., TPAMI
2019), and the database-side augmentation (DBA) that applies the same to gallery features.

All features are l2-normalised first; an expanded feature is the normalised weighted sum of
the feature and its top-``k`` neighbours by cosine similarity. ``alpha == 0``: every term has
weight 1 (average QE). ``alpha > 0``: a neighbour with similarity ``s`` weighs
``max(s, 0) ** alpha`` (FastReID's AQE uses alpha 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from uda_reid.config.sections.test import QueryExpansionConfig
from uda_reid.evaluation.protocol import CHUNK_ELEMENTS, ArrayLike


@torch.no_grad()
def _expand(x: torch.Tensor, db: torch.Tensor, k: int, alpha: float, add_self: bool
            ) -> torch.Tensor:
    """(N, D) normalised ``[x] + sum_j w_j db[nn_j]`` over the top-``k`` of ``db`` per row."""
    if k < 1:
        raise ValueError(f"TEST.QE.K must be >= 1, got {k}")
    if alpha < 0:
        raise ValueError(f"TEST.QE.ALPHA must be >= 0, got {alpha}")
    out = torch.empty_like(x)
    chunk = max(1, CHUNK_ELEMENTS // max(db.shape[0], k * db.shape[1]))  # sims or neighbours
    for start in range(0, x.shape[0], chunk):
        rows = x[start:start + chunk]
        sim, idx = (rows @ db.t()).topk(min(k, db.shape[0]), dim=1)
        weights = torch.ones_like(sim) if alpha == 0 else sim.clamp_min(0) ** alpha
        expanded = torch.einsum("nk,nkd->nd", weights, db[idx])
        out[start:start + len(rows)] = expanded + rows if add_self else expanded
    return F.normalize(out, dim=1)


def query_expansion(qf: ArrayLike, gf: ArrayLike, k: int = QueryExpansionConfig.K,
                    alpha: float = QueryExpansionConfig.ALPHA) -> torch.Tensor:
    """(Q, D), (G, D) -> (Q, D) expanded queries: each query plus its top-``k`` gallery
    neighbours (query weight 1), l2-normalised."""
    q = F.normalize(torch.as_tensor(qf).float(), dim=1)
    g = F.normalize(torch.as_tensor(gf).float(), dim=1)
    return _expand(q, g, k, alpha, add_self=True)


def database_augmentation(gf: ArrayLike, k: int = QueryExpansionConfig.K,
                          alpha: float = QueryExpansionConfig.ALPHA) -> torch.Tensor:
    """(G, D) -> (G, D): each gallery feature replaced by the weighted sum of its top-``k``
    gallery neighbours, itself included (as its own nearest neighbour), l2-normalised."""
    g = F.normalize(torch.as_tensor(gf).float(), dim=1)
    return _expand(g, g, k, alpha, add_self=False)
