"""Identity (PK) batch sampling for ReID training, on true labels or pseudo-labels."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterator, List, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PKBatchSampler(Sampler[List[int]]):
    """Batches of ``P = batch_size / K`` identities with ``K = num_instances`` images each.

    One epoch visits every identity once (in a random order; the last incomplete group of P
    identities is dropped). An identity with fewer than K images is sampled with replacement.
    Labels ``-1`` (outliers of a clustering) are never sampled. Under DDP, each rank takes a
    disjoint share of every epoch's batches (``rank::world_size``). The order depends only on
    ``seed`` and the epoch set by :meth:`set_epoch`, so a resumed run draws the same batches.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_instances: int,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch size {batch_size} must be a multiple of "
                             f"DATALOADER.NUM_INSTANCE={num_instances}")
        self.num_instances = num_instances
        self.ids_per_batch = batch_size // num_instances
        index: Dict[int, List[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            if int(label) >= 0:
                index[int(label)].append(i)
        if len(index) < self.ids_per_batch:
            raise ValueError(f"{len(index)} identities cannot fill a batch of "
                             f"{self.ids_per_batch} identities x {num_instances} images")
        self.index = dict(sorted(index.items()))
        self.seed = seed
        default_rank, default_world = _dist_info()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> List[List[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        ids = list(self.index)
        order = rng.permutation(len(ids))
        batches = []
        for start in range(0, len(ids) - self.ids_per_batch + 1, self.ids_per_batch):
            batch: List[int] = []
            for j in order[start:start + self.ids_per_batch]:
                members = self.index[ids[j]]
                replace = len(members) < self.num_instances
                batch.extend(int(m) for m in rng.choice(members, self.num_instances,
                                                        replace=replace))
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._all_batches()[self.rank::self.world_size])

    def __len__(self) -> int:
        total = len(self.index) // self.ids_per_batch
        return len(range(self.rank, total, self.world_size))
