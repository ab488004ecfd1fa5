"""Batch samplers for ReID training: identity (PK) batches on true labels or pseudo-labels, and
plain shuffled batches. Deterministic per seed and epoch, resumable, DDP-aware."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from uda_reid.utils.distributed import dist_rank_and_world_size


class EpochBatchSampler(Sampler[List[int]], ABC):
    """Base of the training batch samplers: an epoch's batches are drawn from
    :meth:`epoch_rng` (``numpy.random.default_rng([seed, epoch])``) identically on every rank,
    and rank ``r`` of ``world_size`` takes batches ``r, r + world_size, ...`` of the first
    ``world_size * (n // world_size)`` (equal, disjoint shares keep DDP ranks in step).

    ``set_epoch`` chooses the epoch; ``state_dict``/``load_state_dict`` save and restore it;
    ``skip_batches(n)`` makes the next pass start at this rank's batch ``n`` of the epoch (a
    run resumed in the middle of a pass), without loading the skipped ones.
    """

    def __init__(self, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        default_rank, default_world = dist_rank_and_world_size()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside 0..{self.world_size - 1}")
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    @abstractmethod
    def epoch_batches(self, rng: Any) -> List[List[int]]:
        """All batches of one epoch (every rank's), drawn from ``rng`` (:meth:`epoch_rng`)."""

    @abstractmethod
    def num_epoch_batches(self) -> int:
        """``len(epoch_batches(...))``, known without drawing."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_batches(self, count: int) -> None:
        """The next pass starts after this rank's first ``count`` batches (once)."""
        self.skip = count

    def epoch_rng(self) -> Any:
        """The generator the current epoch's batches are drawn from."""
        return np.random.default_rng([self.seed, self.epoch])

    def __iter__(self) -> Iterator[List[int]]:
        batches = self.epoch_batches(self.epoch_rng())
        usable = len(batches) // self.world_size * self.world_size
        start, self.skip = self.skip, 0
        return iter(batches[self.rank:usable:self.world_size][start:])

    def __len__(self) -> int:
        return self.num_epoch_batches() // self.world_size

    def state_dict(self) -> Dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the epoch; a checkpoint from a differently seeded sampler is an error."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.epoch = int(state["epoch"])


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")


def label_members(labels: Sequence[int]) -> List[np.ndarray]:
    """The indexes of each label's items, by increasing label; label -1 is left out."""
    index: Dict[int, List[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        if int(label) >= 0:
            index[int(label)].append(i)
    return [np.asarray(members) for _, members in sorted(index.items())]


class PKBatchSampler(EpochBatchSampler):
    """Batches of ``P = batch_size / K`` identities with ``K = num_instances`` images each.

    One epoch visits every identity once (in a random order; the last incomplete group of P
    identities is dropped). An identity with fewer than K images is sampled with replacement.
    Labels ``-1`` (outliers of a clustering) are never sampled.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_instances: int,
                 seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        super().__init__(seed, rank, world_size)
        _check_batch_size(batch_size)
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch size {batch_size} must be a multiple of "
                             f"DATALOADER.NUM_INSTANCE={num_instances}")
        self.num_instances = num_instances
        self.ids_per_batch = batch_size // num_instances
        self.index = label_members(labels)
        if len(self.index) < self.ids_per_batch * self.world_size:
            raise ValueError(f"{len(self.index)} identities cannot fill a batch of "
                             f"{self.ids_per_batch} identities x {num_instances} images on "
                             f"each of {self.world_size} rank(s)")

    def num_epoch_batches(self) -> int:
        return len(self.index) // self.ids_per_batch

    def epoch_batches(self, rng: np.random.Generator) -> List[List[int]]:
        order = rng.permutation(len(self.index))
        batches = []
        for start in range(0, self.num_epoch_batches() * self.ids_per_batch, self.ids_per_batch):
            batch: List[int] = []
            for j in order[start:start + self.ids_per_batch]:
                members = self.index[j]
                replace = len(members) < self.num_instances
                batch.extend(rng.choice(members, self.num_instances, replace=replace).tolist())
            batches.append(batch)
        return batches


class RandomBatchSampler(EpochBatchSampler):
    """Shuffled batches of ``batch_size`` images (the last incomplete batch dropped); images
    labelled ``-1`` are left out."""

    def __init__(self, labels: Sequence[int], batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        super().__init__(seed, rank, world_size)
        _check_batch_size(batch_size)
        self.batch_size = batch_size
        self.indices = np.asarray([i for i, label in enumerate(labels) if int(label) >= 0])
        if len(self.indices) < batch_size * self.world_size:
            raise ValueError(f"{len(self.indices)} images cannot fill a batch of {batch_size} "
                             f"on each of {self.world_size} rank(s)")

    def num_epoch_batches(self) -> int:
        return len(self.indices) // self.batch_size

    def epoch_batches(self, rng: np.random.Generator) -> List[List[int]]:
        order = self.indices[rng.permutation(len(self.indices))]
        n = self.num_epoch_batches() * self.batch_size
        return order[:n].reshape(-1, self.batch_size).tolist()


class TorchShuffledBatchSampler(EpochBatchSampler):
    """Shuffled batches of ``batch_size`` of ``num_items`` items (the last incomplete batch
    dropped), epoch ``e`` ordered by ``torch.randperm`` from a torch generator seeded
    ``seed + e``: the order the CamStyle StarGAN trains on. Hand :attr:`generator` to the
    ``DataLoader`` too: it then draws its worker seed from the epoch's generator (after the
    permutation), not from the global RNG, so the data order never moves the training's RNG."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        super().__init__(seed, rank, world_size)
        _check_batch_size(batch_size)
        self.num_items, self.batch_size = num_items, batch_size
        self.generator = torch.Generator()
        if num_items < batch_size * self.world_size:
            raise ValueError(f"{num_items} images cannot fill a batch of {batch_size} on each "
                             f"of {self.world_size} rank(s)")

    def num_epoch_batches(self) -> int:
        return self.num_items // self.batch_size

    def epoch_rng(self) -> torch.Generator:
        return self.generator.manual_seed(self.seed + self.epoch)

    def epoch_batches(self, rng: torch.Generator) -> List[List[int]]:
        order = torch.randperm(self.num_items, generator=rng)
        n = self.num_epoch_batches() * self.batch_size
        return order[:n].reshape(-1, self.batch_size).tolist()


class GroupStreamBatchSampler(EpochBatchSampler):
    """SpCL's batches: every epoch each group in a random order gives ``num_instances`` of its
    images (with replacement when it has fewer) or, a group of one image, that image once; the
    stream is cut into batches of ``batch_size`` (a group may straddle two batches; the last
    incomplete batch is dropped). Labels ``-1`` are never sampled.

    With ``camids`` (N,) a group's images prefer other cameras than a random anchor's: the
    anchor, then ``num_instances - 1`` images drawn from the group's images in other cameras,
    or from its other images when all share the anchor's camera; drawn with replacement
    unless there are at least ``num_instances`` to draw from (the official threshold).

    As yxgeee/SpCL's RandomMultipleGallerySampler with drop_last batches; without ``camids``,
    without its preference for other cameras."""

    def __init__(self, labels: Sequence[int], batch_size: int, num_instances: int,
                 seed: int = 0, rank: Optional[int] = None, world_size: Optional[int] = None,
                 camids: Optional[Sequence[int]] = None) -> None:
        super().__init__(seed, rank, world_size)
        _check_batch_size(batch_size)
        if num_instances < 1:
            raise ValueError(f"num_instances must be positive, got {num_instances}")
        if camids is not None and len(camids) != len(labels):
            raise ValueError(f"{len(camids)} camera ids for {len(labels)} labels")
        self.batch_size, self.num_instances = batch_size, num_instances
        self.index = label_members(labels)
        self.camids = None if camids is None else np.asarray(camids, dtype=np.int64)
        drawn = sum(1 if len(m) == 1 else num_instances for m in self.index)
        if drawn < batch_size * self.world_size:
            raise ValueError(f"{drawn} images per epoch cannot fill a batch of {batch_size} "
                             f"on each of {self.world_size} rank(s)")
        self.drawn = drawn

    def num_epoch_batches(self) -> int:
        return self.drawn // self.batch_size

    def _camera_aware_draw(self, members: np.ndarray, rng: np.random.Generator) -> List[int]:
        """A random anchor of the group and ``num_instances - 1`` of its other images,
        preferring other cameras than the anchor's."""
        anchor = members[rng.integers(len(members))]
        others = members[members != anchor]
        pool = others[self.camids[others] != self.camids[anchor]]
        if len(pool) == 0:
            pool = others
        drawn = rng.choice(pool, self.num_instances - 1, replace=len(pool) < self.num_instances)
        return [int(anchor), *drawn.tolist()]

    def epoch_batches(self, rng: np.random.Generator) -> List[List[int]]:
        stream: List[int] = []
        for j in rng.permutation(len(self.index)):
            members = self.index[j]
            if len(members) == 1:
                stream.append(int(members[0]))
            elif self.camids is not None:
                stream.extend(self._camera_aware_draw(members, rng))
            else:
                replace = len(members) < self.num_instances
                stream.extend(rng.choice(members, self.num_instances, replace=replace).tolist())
        n = self.num_epoch_batches() * self.batch_size
        return [stream[i:i + self.batch_size] for i in range(0, n, self.batch_size)]


class ShardSampler(Sampler[int]):
    """This rank's contiguous share of ``0..num_samples-1`` (the first ``num_samples %
    world_size`` ranks hold one more), so that the ranks' shares concatenated in rank order
    are the dataset in order (sequential evaluation and feature extraction)."""

    def __init__(self, num_samples: int, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        default_rank, default_world = dist_rank_and_world_size()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if num_samples < self.world_size:
            raise ValueError(f"{num_samples} images cannot be shared by {self.world_size} "
                             "distributed processes")
        base, extra = divmod(num_samples, self.world_size)
        self.start = self.rank * base + min(self.rank, extra)
        self.stop = self.start + base + (self.rank < extra)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def build_batch_sampler(kind: str, labels: Sequence[int], batch_size: int, num_instances: int,
                        seed: int = 0, rank: Optional[int] = None,
                        world_size: Optional[int] = None) -> EpochBatchSampler:
    """``kind`` (``DATALOADER.SAMPLER``): ``"pk"`` identity batches or ``"random"`` batches."""
    if kind == "pk":
        return PKBatchSampler(labels, batch_size, num_instances, seed, rank, world_size)
    if kind == "random":
        return RandomBatchSampler(labels, batch_size, seed, rank, world_size)
    raise ValueError(f"DATALOADER.SAMPLER={kind!r} is not a sampler; known: pk, random")
