"""Communication between the processes of a ``torch.distributed`` run.

The helpers that communicate are collective (every rank must call them, in the same order); in
one process (no process group, or a world of one) they return their input unchanged or run
locally, so code written with them runs unchanged in one process. Tensors travel on the process group's device (CUDA for
NCCL, the CPU for Gloo) and come back on the device they came from.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def dist_rank_and_world_size() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True in a process group of more than one process."""
    return dist_rank_and_world_size()[1] > 1


def is_main_process() -> bool:
    """True on rank 0 (and in a run of one process)."""
    return dist_rank_and_world_size()[0] == 0


def barrier() -> None:
    """Wait until every rank has arrived here."""
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_main_process(action: Callable[[], T]) -> Optional[T]:
    """Run ``action`` (e.g. a file write) on rank 0 only, then wait for it on every rank (so
    the other ranks may read what it wrote). Returns its result on rank 0, None elsewhere."""
    result = action() if is_main_process() else None
    barrier()
    return result


def main_process_result(compute: Callable[[], T]) -> T:
    """``compute()`` evaluated once, on rank 0, and its (picklable) result on every rank."""
    if not is_distributed():
        return compute()
    box = [compute() if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one rank (a decision every rank then shares)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([int(bool(flag))], device=_comm_device())
    dist.all_reduce(value)
    return bool(value.item())


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The elementwise sum of ``tensor`` over the ranks (no gradient)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_comm_device()).clone()
    dist.all_reduce(out)
    return out.to(tensor.device)


def _row_counts(rows: int) -> List[int]:
    counts = torch.tensor([rows], device=_comm_device())
    out = [torch.zeros_like(counts) for _ in range(dist.get_world_size())]
    dist.all_gather(out, counts)
    return [int(c.item()) for c in out]


def _gather_padded(tensor: Tensor, counts: Sequence[int]) -> Tensor:
    """All ranks' (n_r, ...) tensors concatenated in rank order."""
    device = tensor.device
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]), device=_comm_device())
    padded[:tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]).to(device)


def all_gather_rows(tensor: Tensor) -> Tensor:
    """Every rank's rows (n_r, ...) concatenated in rank order (no gradient; the row counts
    may differ between ranks)."""
    if not is_distributed():
        return tensor
    return _gather_padded(tensor.detach(), _row_counts(tensor.shape[0]))


class _GatherRowsWithGrad(torch.autograd.Function):
    """Forward: every rank's rows in rank order. Backward: each rank receives, for its own
    rows, the sum over the ranks of the gradients flowing into them."""

    @staticmethod
    def forward(ctx, tensor: Tensor, counts: List[int]) -> Tensor:
        rank = dist.get_rank()
        ctx.rows = (sum(counts[:rank]), sum(counts[:rank + 1]))
        return _gather_padded(tensor, counts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        start, stop = ctx.rows
        return all_reduce_sum(grad.contiguous())[start:stop], None


def gather_rows_with_grad(tensor: Tensor) -> Tuple[Tensor, int]:
    """Every rank's rows in rank order, differentiable with respect to this rank's rows, and
    where this rank's rows start in the result. With gradients averaged over the ranks
    afterwards, a loss over the gathered rows trains as the same loss over one global batch."""
    if not is_distributed():
        return tensor, 0
    counts = _row_counts(tensor.shape[0])
    return _GatherRowsWithGrad.apply(tensor, counts), sum(counts[:dist.get_rank()])


class _AllReduceWithGrad(torch.autograd.Function):
    """Forward: the sum over the ranks. Backward: the sum over the ranks of the gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        return all_reduce_sum(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return all_reduce_sum(grad.contiguous())


def all_reduce_with_grad(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the ranks, differentiable (e.g. batch statistics)."""
    if not is_distributed():
        return tensor
    return _AllReduceWithGrad.apply(tensor)


def batch_mean(values: Tensor) -> Tensor:
    """The mean of per-sample ``values`` (n,) over the global batch, as this rank's share:
    ``sum(values) * world_size / total n``, so that averaging the ranks' results (as the
    gradient averaging does) gives the global mean even when the ranks hold different
    numbers of samples. In one process: ``values.mean()``."""
    if not is_distributed():
        return values.mean()
    total = all_reduce_sum(torch.tensor([float(values.numel())], device=values.device))
    return values.sum() * dist.get_world_size() / total[0]
