"""Label transport: balanced label assignment by entropic optimal transport (Sinkhorn-Knopp).

Given scores S (N, K) of N samples for K clusters (e.g. classifier logits), the assignment
Q = diag(a) exp(S / epsilon) diag(b) with row sums 1 (every sample is one unit of mass) and
column sums c (the target marginals, by default the equipartition N / K) is the solution of
the entropy-regularised transport problem max <Q, S> + epsilon H(Q). The row and column
scalings are found by alternate normalisation (Sinkhorn-Knopp), here in log space (log-sum-exp
over rows and columns) so that no kernel entry underflows at small epsilon.

UDAStrongBaseline (``UDAsbs/sinkhornknopp.py``, ``optimize_L_sk``; called per epoch from
``sbs_trainkmeans.py``) raises the softmax of the logits to the power lambda = 25 before the
alternate normalisation, i.e. the kernel exp(25 * logits) up to row factors: epsilon = 1/25
on logits. The hard labels are the row-wise argmax of Q.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

# When labels are transported (ADAPT.PSEUDO_LABEL.TRANSPORT; "none": never).
TRANSPORT_MODES = ("epoch", "batch")


@dataclass
class TransportResult:
    """assignment: (N, K) float64 Q (rows sum to 1, columns to the reachable targets);
    iterations: Sinkhorn iterations run; error: max relative column-marginal error at the end;
    notes: what was degenerate about the input (empty when nothing was)."""

    assignment: torch.Tensor
    iterations: int
    error: float
    notes: List[str] = field(default_factory=list)

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64 hard labels: each row's largest assignment."""
        return self.assignment.argmax(dim=1)


def _column_targets(n: int, k: int, marginals: Optional[torch.Tensor], reachable: torch.Tensor,
                    notes: List[str]) -> torch.Tensor:
    """(K,) float64 target column sums that add up to N, zero where nothing can reach."""
    if marginals is None:
        c = torch.ones(k, dtype=torch.float64)
    else:
        c = torch.as_tensor(marginals, dtype=torch.float64).flatten().cpu()
        if c.shape != (k,) or not torch.isfinite(c).all() or (c < 0).any() or c.sum() <= 0:
            raise ValueError(f"sinkhorn: target marginals must be {k} finite non-negative "
                             f"values with a positive sum, got shape {tuple(c.shape)}")
    c = c.to(reachable.device)
    unreachable = (~reachable) & (c > 0)
    if unreachable.any():
        notes.append(f"{int(unreachable.sum())} of {k} clusters have no finite score from any "
                     "sample (empty clusters): their target mass goes to the others")
        c = torch.where(reachable, c, torch.zeros_like(c))
    if c.sum() <= 0:
        raise ValueError("sinkhorn: no cluster with positive target mass can be reached")
    return c * (n / c.sum())


def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int, tolerance: float,
             marginals: Optional[torch.Tensor] = None) -> TransportResult:
    """Balanced assignment of N samples to K clusters from scores (N, K).

    epsilon: temperature of the kernel exp(scores / epsilon) (> 0); iterations: at most this
    many (row, column) normalisation pairs; tolerance: stop once every column sum is within
    this relative error of its target; marginals: (K,) target column weights (scaled to sum
    to N; default equipartition N / K). -inf scores forbid an assignment; NaN or +inf raise.

    Degenerate inputs are reported in ``notes``, never turned into NaN: K = 1 (everything in
    the one cluster), N < K (at most N clusters can win a hard label), clusters no sample can
    reach (their target mass is spread over the others).
    """
    s = torch.as_tensor(scores).detach()
    if s.dim() != 2 or s.shape[0] < 1 or s.shape[1] < 1:
        raise ValueError(f"sinkhorn: scores must be (N, K) with N, K >= 1, got {tuple(s.shape)}")
    if not epsilon > 0 or iterations < 1 or not tolerance > 0:
        raise ValueError(f"sinkhorn: epsilon ({epsilon}), iterations ({iterations}) and "
                         f"tolerance ({tolerance}) must be positive")
    if torch.isnan(s).any() or (s == float("inf")).any():
        raise ValueError("sinkhorn: scores contain NaN or +inf")
    n, k = s.shape
    log_kernel = s.to(torch.float64) / epsilon
    finite = torch.isfinite(log_kernel)
    if not finite.any(dim=1).all():
        rows = torch.where(~finite.any(dim=1))[0][:5].tolist()
        raise ValueError(f"sinkhorn: rows {rows} have no finite score (no cluster allowed)")
    notes: List[str] = []
    if k == 1:
        notes.append("one cluster: every sample is assigned to it")
    if n < k:
        notes.append(f"fewer samples ({n}) than clusters ({k}): at most {n} clusters can "
                     "receive a hard label")
    log_c = torch.log(_column_targets(n, k, marginals, finite.any(dim=0), notes))
    log_r = torch.zeros(n, dtype=torch.float64, device=log_kernel.device)  # rows sum to 1
    u = torch.zeros_like(log_r)
    v = torch.zeros(k, dtype=torch.float64, device=log_kernel.device)
    error, done = float("inf"), 0
    for done in range(1, iterations + 1):
        v = log_c - torch.logsumexp(log_kernel + u[:, None], dim=0)
        v = torch.where(torch.isfinite(log_c), v, torch.full_like(v, -float("inf")))
        u = log_r - torch.logsumexp(log_kernel + v[None, :], dim=1)
        if not torch.isfinite(u).all():
            rows = torch.where(~torch.isfinite(u))[0][:5].tolist()
            raise ValueError(f"sinkhorn: rows {rows} can only reach clusters with zero target "
                             "mass")
        columns = torch.exp(torch.logsumexp(log_kernel + u[:, None] + v[None, :], dim=0))
        target = torch.exp(log_c)
        held = target > 0
        error = float(((columns[held] - target[held]).abs() / target[held]).max())
        if error <= tolerance:
            break
    assignment = torch.exp(log_kernel + u[:, None] + v[None, :])
    return TransportResult(assignment, done, error, notes)


@dataclass(frozen=True)
class TransportOptions:
    """How pseudo-labels are refined (ADAPT.PSEUDO_LABEL.TRANSPORT*, whose defaults they are):
    ``mode`` one of :data:`TRANSPORT_MODES`; :func:`sinkhorn`'s ``epsilon``, ``iterations``
    and ``tolerance``; ``marginals`` ``"equal"`` (equipartition) or ``"sizes"`` (the current
    cluster sizes) for the per-epoch transport."""

    mode: str
    epsilon: float
    iterations: int
    tolerance: float
    marginals: str

    def __post_init__(self) -> None:
        if self.mode not in TRANSPORT_MODES:
            raise ValueError("ADAPT.PSEUDO_LABEL.TRANSPORT must be 'none' or one of "
                             f"{TRANSPORT_MODES}, got {self.mode!r}")
        if self.marginals not in ("equal", "sizes"):
            raise ValueError("ADAPT.PSEUDO_LABEL.TRANSPORT_MARGINALS must be 'equal' or 'sizes', "
                             f"got {self.marginals!r}")
        if not self.epsilon > 0 or self.iterations < 1 or not self.tolerance > 0:
            raise ValueError("ADAPT.PSEUDO_LABEL.TRANSPORT_EPSILON, TRANSPORT_ITERS and "
                             f"TRANSPORT_TOL must be positive, got {self.epsilon}, "
                             f"{self.iterations}, {self.tolerance}")

    @classmethod
    def from_config(cls, m) -> Optional["TransportOptions"]:
        """From an ADAPT.PSEUDO_LABEL section; None when ``TRANSPORT`` is ``"none"``."""
        if m.TRANSPORT == "none":
            return None
        return cls(m.TRANSPORT, m.TRANSPORT_EPSILON, m.TRANSPORT_ITERS, m.TRANSPORT_TOL,
                   m.TRANSPORT_MARGINALS)


def transport_epoch_labels(logits: torch.Tensor, labels: np.ndarray, options: TransportOptions
                           ) -> Tuple[np.ndarray, TransportResult]:
    """New labels (N,) for the labelled rows (label >= 0) of a whole set: the balanced
    assignment of their logits (N, C) over the C classes; unlabelled rows stay -1."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = labels >= 0
    marginals = None
    if options.marginals == "sizes":
        marginals = torch.from_numpy(np.bincount(labels[rows], minlength=logits.shape[1]))
    result = sinkhorn(logits[torch.from_numpy(rows).to(logits.device)], options.epsilon,
                      options.iterations, options.tolerance, marginals)
    new = labels.copy()
    new[rows] = result.labels.cpu().numpy()
    return new, result


def transport_batch_labels(logits: torch.Tensor, labels: torch.Tensor,
                           options: TransportOptions) -> torch.Tensor:
    """New labels (B,) of one batch: its labelled rows re-assigned among the classes present
    in the batch, each keeping its batch count (the marginals); logits (B, C)."""
    rows = labels >= 0
    if not rows.any():
        return labels
    classes, counts = torch.unique(labels[rows], return_counts=True)
    result = sinkhorn(logits[rows][:, classes], options.epsilon, options.iterations,
                      options.tolerance, counts)
    new = labels.clone()
    new[rows] = classes[result.labels.to(classes.device)]
    return new
