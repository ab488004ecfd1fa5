"""Datasets over sample lists and the train / test loaders."""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from uda_reid.config.sections.data import DataloaderConfig, DatasetsConfig, InputConfig
from uda_reid.data.datasets import Sample, build_dataset_from_section
from uda_reid.data.datasets.base import Split, evaluation_splits, relabel, with_pids
from uda_reid.data.samplers import ShardSampler, build_batch_sampler
from uda_reid.data.transforms import build_transforms_from_input
from uda_reid.utils.distributed import dist_rank_and_world_size, is_distributed

logger = logging.getLogger(__name__)


def read_image(path: str) -> Image.Image:
    """An RGB PIL image; a missing or unreadable file is an error naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as err:
        raise OSError(f"Cannot read image {path}: {err}") from err


class ImageDataset(Dataset):
    """Items ``{"images", "pids", "camids", "indexes", "paths"}`` over a list of samples."""

    def __init__(self, samples: Sequence[Sample], transform: Optional[Callable] = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Dict[str, object]:
        path, pid, camid, index = self.samples[i]
        img = read_image(path)
        return {"images": self.transform(img) if self.transform else img, "pids": pid,
                "camids": camid, "indexes": index, "paths": path}


def collate(items: List[Dict[str, object]]) -> Dict[str, object]:
    """Stack images, tensorise the integer entries (ids, indexes); strings (``paths``) stay a
    list."""
    images = [it["images"] for it in items]
    batch: Dict[str, object] = {"images": torch.stack(images)}  # type: ignore[arg-type]
    for key in items[0]:
        if key != "images":
            values = [it[key] for it in items]
            batch[key] = (torch.tensor(values, dtype=torch.long) if isinstance(values[0], int)
                          else values)
    return batch


def build_batch_loader(dataset: Dataset, labels: Sequence[int], batch_size: int,
                       num_instances: int, num_workers: int = 0, seed: int = 0,
                       sampler: str = DataloaderConfig.SAMPLER, rank: Optional[int] = None,
                       world_size: Optional[int] = None) -> DataLoader:
    """Training batches of ``dataset`` drawn by ``sampler`` (``"pk"``: ``batch_size /
    num_instances`` labels x ``num_instances`` items; ``"random"``) over ``labels`` (N,) (-1:
    left out); ``rank``/``world_size`` default to the process group's, each rank getting a
    disjoint share of every epoch's batches."""
    batch_sampler = build_batch_sampler(sampler, labels, batch_size, num_instances, seed, rank,
                                        world_size)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      collate_fn=collate, persistent_workers=False)


def build_shuffled_loader(dataset: Dataset, batch_size: int, num_workers: int = 0,
                          seed: int = 0) -> DataLoader:
    """Random full batches of all of ``dataset`` (``shuffle=True, drop_last=True``): a
    :class:`~uda_reid.data.samplers.RandomBatchSampler` over every index, this rank's share."""
    return build_batch_loader(dataset, [0] * len(dataset), batch_size, 1, num_workers, seed,
                              sampler="random")


def build_train_loader(samples: Sequence[Sample], transform: Callable, batch_size: int,
                       num_instances: int, num_workers: int = 0, seed: int = 0,
                       labels: Optional[Sequence[int]] = None,
                       sampler: str = DataloaderConfig.SAMPLER,
                       rank: Optional[int] = None,
                       world_size: Optional[int] = None) -> DataLoader:
    """A training loader over ``samples`` with ``batch_size`` images per batch on this rank
    (:func:`build_batch_loader`); ``labels`` (e.g. pseudo-labels) replace the samples' pids both
    for the sampler and in the batches' ``"pids"``."""
    if labels is not None:
        samples = with_pids(samples, labels)
    return build_batch_loader(ImageDataset(samples, transform), [s[1] for s in samples],
                              batch_size, num_instances, num_workers, seed, sampler, rank,
                              world_size)


def build_test_loader(query: Sequence[Sample], gallery: Sequence[Sample], transform: Callable,
                      batch_size: int, num_workers: int = 0) -> Tuple[DataLoader, int]:
    """A sequential loader over query then gallery; returns it and the number of queries.

    Under torch.distributed it covers this rank's contiguous share (:class:`ShardSampler`);
    :func:`uda_reid.evaluation.extract.extract_features` gathers the shares back in order."""
    dataset = ImageDataset(list(query) + list(gallery), transform)
    sampler = ShardSampler(len(dataset)) if is_distributed() else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler,
                        num_workers=num_workers, collate_fn=collate)
    return loader, len(query)


def combine_train_sets(datasets: Sequence) -> List[Sample]:
    """Training samples of several datasets with disjoint, relabelled ids."""
    combined: List[Sample] = []
    offset = 0
    for ds in datasets:
        combined += [(p, pid + offset, cam, 0) for p, pid, cam, _ in ds.train]
        offset += ds.num_train_pids
    return relabel(combined)


def per_rank_batch_size(total: int, key: str = "SOLVER.IMS_PER_BATCH") -> int:
    """Batch sizes in the config (``key``) count all ranks together (as in FastReID): this
    rank's share; a size the ranks cannot share equally is an error naming ``key``."""
    _, world_size = dist_rank_and_world_size()
    if total % world_size:
        raise ValueError(f"{key}={total} is not divisible by the {world_size} "
                         f"distributed processes")
    return total // world_size


def build_train_loader_for_datasets(datasets: DatasetsConfig, inp: InputConfig,
                                    loader: DataloaderConfig, batch_size: int, seed: int
                                    ) -> Tuple[DataLoader, int]:
    """Training loader over the ``DATASETS`` section's ``NAMES`` (combined, relabelled) with
    the ``INPUT`` section's training transforms and the ``DATALOADER`` section's sampler, and
    its number of identities; ``batch_size`` counts all ranks (``SOLVER.IMS_PER_BATCH``)."""
    train_sets = [build_dataset_from_section(datasets, name) for name in datasets.NAMES]
    for ds in train_sets:
        logger.info("\n%s", ds.summary())
    samples = combine_train_sets(train_sets)
    train_loader = build_train_loader(samples, build_transforms_from_input(inp, True),
                                      per_rank_batch_size(batch_size), loader.NUM_INSTANCE,
                                      loader.NUM_WORKERS, seed, sampler=loader.SAMPLER)
    return train_loader, len({s[1] for s in samples})


def build_test_set(datasets: DatasetsConfig, inp: InputConfig, name: str, batch_size: int,
                   num_workers: int) -> Tuple[DataLoader, int, List[Split]]:
    """Query+gallery loader of test dataset ``name`` (from the ``DATASETS`` section, with the
    ``INPUT`` section's test transforms), its number of queries and the (query, gallery) index
    splits its protocol evaluates (:func:`evaluation_splits`)."""
    ds = build_dataset_from_section(datasets, name)
    logger.info("\n%s", ds.summary())
    test_loader, num_query = build_test_loader(ds.query, ds.gallery,
                                               build_transforms_from_input(inp, False),
                                               batch_size, num_workers)
    return test_loader, num_query, evaluation_splits(ds)


def build_train_loader_from_config(cfg) -> Tuple[DataLoader, int]:
    """Entry point for the run flows: :func:`build_train_loader_for_datasets` with
    ``SOLVER.IMS_PER_BATCH`` and ``SEED``."""
    return build_train_loader_for_datasets(cfg.DATASETS, cfg.INPUT, cfg.DATALOADER,
                                           cfg.SOLVER.IMS_PER_BATCH, cfg.SEED)


def build_test_set_from_config(cfg, name: str) -> Tuple[DataLoader, int, List[Split]]:
    """Entry point for the run flows: :func:`build_test_set` with ``TEST.IMS_PER_BATCH`` and
    ``DATALOADER.NUM_WORKERS``."""
    return build_test_set(cfg.DATASETS, cfg.INPUT, name, cfg.TEST.IMS_PER_BATCH,
                          cfg.DATALOADER.NUM_WORKERS)


def build_test_loader_from_config(cfg, name: str) -> Tuple[DataLoader, int]:
    """Query+gallery loader of test dataset ``name`` and its number of queries."""
    loader, num_query, _ = build_test_set_from_config(cfg, name)
    return loader, num_query
