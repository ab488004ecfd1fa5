"""Multi-process training: the process group from the launcher's environment, and keeping the
ranks' models identical.

Launch ``torchrun --nproc_per_node N tools/train.py ...`` (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or one task per process under SLURM
(``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``). Every rank runs the whole flow; the
shared pieces do the communication: samplers hand each rank its share of every global batch,
feature extraction gathers the shares, clustering runs on rank 0 and is broadcast, memories are
updated from every rank's batch, losses compare with the whole batch, SyncBatchNorm
(``MODEL.SYNC_BN``) normalises over it, and only rank 0 writes files.

Gradients are averaged over the ranks after the backward pass (:func:`average_gradients`) and
the buffers broadcast from rank 0 after each step (:func:`broadcast_buffers`), which is what
``DistributedDataParallel`` does, without its requirement that every parameter be used inside
the wrapped module's forward and receive a gradient in every step (the pseudo-label classifiers
are called outside the model's forward; freezing and label-less rounds leave parameters
without gradients).
"""
from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping

import torch
import torch.distributed as dist
from torch import nn

from uda_reid.engine.seed import get_rng_states, seed_everything, set_rng_states
from uda_reid.utils.distributed import (all_gather_objects, all_reduce_sum,
                                        dist_rank_and_world_size, is_distributed)

logger = logging.getLogger(__name__)

DEFAULT_PORT = "29500"


def _int_var(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={environ[name]!r} is not an integer") \
            from None


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the launch: global rank, number of processes, rank on its
    node (its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "LaunchEnv":
        """torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, else SLURM's
        ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, else one process."""
        for rank, world, local in (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
                                   ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
            if world in environ:
                env = cls(_int_var(environ, rank) if rank in environ else 0,
                          _int_var(environ, world),
                          _int_var(environ, local) if local in environ else 0)
                if not 0 <= env.rank < env.world_size:
                    raise ValueError(f"{rank}={env.rank} is outside 0..{env.world_size - 1} "
                                     f"({world}={env.world_size})")
                return env
        return cls()


def rendezvous_address(environ: Mapping[str, str]) -> Dict[str, str]:
    """``MASTER_ADDR``/``MASTER_PORT`` to use: as set (torchrun sets both), else for a
    one-node SLURM job this machine and port 29500; a multi-node job without them is an
    error saying how to set them."""
    address = {k: environ[k] for k in ("MASTER_ADDR", "MASTER_PORT") if k in environ}
    if "MASTER_ADDR" not in address:
        if int(environ.get("SLURM_NNODES", "1")) > 1:
            raise ValueError("MASTER_ADDR is not set for a multi-node run: export "
                             "MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | "
                             "head -n 1) (and MASTER_PORT, default 29500) before srun")
        address["MASTER_ADDR"] = "127.0.0.1"
    address.setdefault("MASTER_PORT", DEFAULT_PORT)
    return address


def init_distributed(device: str, environ: Mapping[str, str] = os.environ) -> LaunchEnv:
    """Join the process group the launcher set up (nothing to do for one process or when a
    group exists): NCCL with one GPU per process (``LOCAL_RANK``) unless ``device``
    (``MODEL.DEVICE``) is ``cpu`` or there is no GPU, then Gloo."""
    env = LaunchEnv.from_environ(environ)
    if env.world_size == 1 or dist.is_initialized():
        return env
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
    os.environ.update(rendezvous_address(environ))
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://",
                            rank=env.rank, world_size=env.world_size)
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    logger.info("Distributed run: rank %d of %d (%s)", env.rank, env.world_size,
                dist.get_backend())
    return env


def _broadcast_from_main(tensors: List[torch.Tensor]) -> None:
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


def prepare_ranks(model: nn.Module, seed: int) -> None:
    """Before training: every rank takes rank 0's parameters and buffers, and ranks above 0
    reseed their generators with ``seed + rank`` (their data augmentation draws differ; rank 0
    keeps the stream a one-process run has)."""
    if not is_distributed():
        return
    _broadcast_from_main([*model.parameters(), *model.buffers()])
    rank = dist.get_rank()
    if rank > 0:
        seed_everything(seed + rank)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank."""
    if is_distributed():
        _broadcast_from_main(list(model.buffers()))


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace every rank's gradients by their mean over the ranks. A parameter without a
    gradient on some ranks counts zero there; one without a gradient on every rank keeps none
    (so the optimiser skips it, as it would in one process)."""
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    has_grad = all_reduce_sum(torch.tensor([p.grad is not None for p in params],
                                           dtype=torch.float32)) > 0
    params = [p for p, used in zip(params, has_grad.tolist()) if used]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    world = dist.get_world_size()
    for dtype in sorted({p.grad.dtype for p in params}, key=str):
        grads = [p.grad for p in params if p.grad.dtype == dtype]
        flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads])) / world
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))


def mean_over_ranks(values: Dict[str, float]) -> Dict[str, float]:
    """Each value's mean over the ranks (e.g. the logged losses of the global batch)."""
    if not is_distributed() or not values:
        return values
    total = all_reduce_sum(torch.tensor(list(values.values()), dtype=torch.float64))
    return {k: float(v) / dist.get_world_size() for k, v in zip(values, total)}


def rng_states() -> Dict[str, Any]:
    """The random generators' states for a checkpoint: this process's, or under
    torch.distributed every rank's (``{"ranks": [...]}``, gathered on every rank)."""
    if not is_distributed():
        return get_rng_states()
    return {"ranks": all_gather_objects(get_rng_states())}


def restore_rng_states(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_states`; resuming with another number of processes is an error."""
    rank, world = dist_rank_and_world_size()
    ranks = state.get("ranks")
    saved = len(ranks) if ranks is not None else 1
    if saved != world:
        raise ValueError(f"the checkpoint was written by a run of {saved} process(es); resume "
                         f"it with {saved}, not {world}")
    set_rng_states(ranks[rank] if ranks is not None else state)
