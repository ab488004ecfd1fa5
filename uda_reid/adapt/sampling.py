"""Shuffled fixed-size batches (``shuffle=True, drop_last=True``), reproducible per epoch."""
from __future__ import annotations

from typing import Optional

from uda_reid.data.samplers import RandomBatchSampler


class ShuffledBatchSampler(RandomBatchSampler):
    """A random permutation of ``0..num_samples-1`` per epoch cut into full batches of
    ``batch_size`` images (this rank's share of every epoch under torch.distributed).

    The order depends only on ``seed`` and the epoch set by :meth:`set_epoch` (the trainer's
    batch stream calls it), so a resumed run draws the same batches.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        super().__init__([0] * num_samples, batch_size, seed, rank, world_size)
