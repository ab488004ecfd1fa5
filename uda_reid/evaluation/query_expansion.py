"""Query expansion: average QE (Chum et al.) and alpha-QE (Radenović et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def query_expansion(qf: torch.Tensor, gf: torch.Tensor, k: int = 5, alpha: float = 0.0
                    ) -> torch.Tensor:
    """Expanded query features (Q, D), l2-normalised.

    Each query is replaced by the normalised weighted sum of itself and its top-``k`` gallery
    neighbours by cosine similarity. ``alpha == 0``: every term has weight 1 (average QE);
    ``alpha > 0``: a neighbour with similarity ``s`` weighs ``max(s, 0) ** alpha`` and the
    query itself 1 (alpha-QE).
    """
    if k < 1:
        raise ValueError(f"TEST.QE.K must be >= 1, got {k}")
    q, g = F.normalize(qf.float(), dim=1), F.normalize(gf.float(), dim=1)
    sim, idx = (q @ g.t()).topk(min(k, g.shape[0]), dim=1)
    weights = torch.ones_like(sim) if alpha == 0 else sim.clamp_min(0) ** alpha
    expanded = q + (weights[..., None] * g[idx]).sum(1)
    return F.normalize(expanded, dim=1)
