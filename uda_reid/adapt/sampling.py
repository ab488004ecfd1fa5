"""Shuffled fixed-size batches (``shuffle=True, drop_last=True``), reproducible per epoch."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np
from torch.utils.data import Sampler


class ShuffledBatchSampler(Sampler[List[int]]):
    """A random permutation of ``0..num_samples-1`` per epoch cut into full batches.

    The order depends only on ``seed`` and the epoch set by :meth:`set_epoch` (the trainer's
    batch stream calls it), so a resumed run draws the same batches.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1 or num_samples < batch_size:
            raise ValueError(f"{num_samples} images cannot fill one batch of {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[List[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield [int(i) for i in order[start:start + self.batch_size]]

    def __len__(self) -> int:
        return self.num_samples // self.batch_size
