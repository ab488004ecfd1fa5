"""Training the CycleGANs of a dataset: one resumable run of the shared trainer per camera pair.

Run folder: ``<OUTPUT_DIR>/pairs/c<a>-c<b>/`` (cameras 1-based) with ``last.pth`` (the trainer's
full state after each ``CHECKPOINT_PERIOD`` epochs; resuming continues bit-identically),
``pair_train.json`` when the pair finished, TensorBoard events and ``samples/epoch_XXX.png``.
Shard ``i`` of ``n`` trains the pairs at positions ``i, i+n, ...`` of the list (0,1), (0,2), ...,
so shards on several machines sharing the folder train disjoint pairs.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from camstyle.cyclegan_model import CycleGAN, patch_map_size
from camstyle.cyclegan_step import (CameraPairImages, CycleGANStep, UnalignedPairSampler,
                                    pair_sample_grid, sample_batch)
from camstyle.data import CameraSample
from camstyle.sample_sheets import SampleSheetHook
from uda_reid.engine.checkpoint import Checkpointer
from uda_reid.engine.hooks import (CheckpointHook, EpochLRFactorHook, ProgressHook,
                                   TensorBoardHook, WallClockHook)
from uda_reid.engine.lr_schedule import linear_decay_factor
from uda_reid.engine.run_folder import check_output_folder, clear_run_outputs
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer import Trainer
from uda_reid.utils.atomic import atomic_write_json

Pair = Tuple[int, int]  # 0-based cameras a < b
PAIRS_DIR = "pairs"
PAIR_MARKERS = ("last.pth", "pair_train.json")
PAIR_OUTPUTS = (*PAIR_MARKERS, "tensorboard/events.out.tfevents.*", "samples/epoch_*.png")


def camera_pairs(num_cameras: int) -> List[Pair]:
    """Every unordered pair of cameras, (0, 1), (0, 2), ..., (C-2, C-1): C(C-1)/2 of them."""
    if num_cameras < 2:
        raise ValueError(f"camera transfer needs at least 2 cameras, got {num_cameras}")
    return [(a, b) for a in range(num_cameras) for b in range(a + 1, num_cameras)]


def shard_pairs(pairs: Sequence[Pair], index: int, count: int) -> List[Pair]:
    """Shard ``index`` of ``count``: the pairs at positions index, index+count, ..."""
    return list(pairs)[index::count]


def pair_dir(run_dir: str | Path, pair: Pair) -> Path:
    """``<run_dir>/pairs/c<a+1>-c<b+1>``."""
    return Path(run_dir) / PAIRS_DIR / f"c{pair[0] + 1}-c{pair[1] + 1}"


def pair_paths(samples: Sequence[CameraSample], pair: Pair) -> Tuple[List[str], List[str]]:
    """Name-sorted image paths of camera a and of camera b."""
    ordered = sorted(samples, key=lambda s: (Path(s[0]).name, s[0]))
    return tuple([path for path, cam in ordered if cam == c] for c in pair)  # type: ignore


def build_pair_trainer(cg: Any, pair: Pair, a_paths: Sequence[str], b_paths: Sequence[str],
                       out_dir: str | Path, *, identity: Mapping[str, Any], seed: int,
                       device: torch.device | str = "cpu", progress: bool = True
                       ) -> Tuple[Trainer, Checkpointer]:
    """The shared trainer for pair ``pair`` from the CAMSTYLE.CYCLEGAN section ``cg``: model
    and optimisers seeded by ``seed``, hooks for the LR decay, progress, TensorBoard, sample
    sheets, wall time and ``last.pth``."""
    out_dir = Path(out_dir)
    patch_map_size(cg.CROP_SIZE, cg.D_LAYERS)
    seed_everything(seed)
    model = CycleGAN.from_config(cg).to(device)
    sampler = UnalignedPairSampler(len(a_paths), len(b_paths), cg.BATCH_SIZE, seed=seed)
    loader = DataLoader(CameraPairImages(a_paths, b_paths, cg.LOAD_SIZE, cg.CROP_SIZE, cg.FLIP),
                        batch_sampler=sampler, num_workers=cg.NUM_WORKERS)
    step = CycleGANStep.from_config(cg, model, loader, device)
    max_epoch = cg.EPOCHS + cg.DECAY_EPOCHS
    meta = {"pair": list(pair), "model_spec": CycleGAN.spec_from_config(cg),
            "image_size": list(cg.CROP_SIZE), "max_epoch": max_epoch}
    checkpointer = Checkpointer(out_dir, identity, meta)
    samples_a = sample_batch(a_paths, cg.NUM_SAMPLE_IMAGES, cg.CROP_SIZE)
    samples_b = sample_batch(b_paths, cg.NUM_SAMPLE_IMAGES, cg.CROP_SIZE)
    hooks = [EpochLRFactorHook(functools.partial(linear_decay_factor, flat_epochs=cg.EPOCHS,
                                                 decay_epochs=cg.DECAY_EPOCHS)),
             ProgressHook(progress), TensorBoardHook(out_dir / "tensorboard", cg.LOG_PERIOD),
             SampleSheetHook(lambda: pair_sample_grid(model, samples_a, samples_b),
                             out_dir / "samples", cg.SAMPLE_PERIOD),
             WallClockHook(), CheckpointHook(checkpointer, cg.CHECKPOINT_PERIOD)]
    trainer = Trainer(model, None, step, max_epoch, len(sampler), hooks, device)
    return trainer, checkpointer


def check_pair_folders(run_dir: str | Path, pairs: Sequence[Pair], resume: bool,
                       overwrite: bool) -> None:
    """No pair folder holds a run unless ``resume`` or ``overwrite`` (writes nothing)."""
    for pair in pairs:
        check_output_folder(pair_dir(run_dir, pair), resume, overwrite, PAIR_MARKERS,
                            what=f"a CycleGAN run of cameras {pair[0] + 1} and {pair[1] + 1}")


def train_pairs(cg: Any, samples: Sequence[CameraSample], num_cameras: int,
                run_dir: str | Path, *, identity: Mapping[str, Any], seed: int,
                shard: Tuple[int, int] = (0, 1), resume: bool = False, overwrite: bool = False,
                device: torch.device | str = "cpu", progress: bool = True) -> Dict[str, Any]:
    """Train (or, with ``resume``, continue or start) the pairs of shard ``shard``; returns a
    summary per pair. Every pair folder is checked before any is written (another run there
    needs ``resume`` or ``overwrite``). Pair k of the list is seeded with ``seed + k``."""
    pairs = camera_pairs(num_cameras)
    mine = shard_pairs(pairs, *shard)
    check_pair_folders(run_dir, mine, resume, overwrite)
    summaries: Dict[str, Any] = {}
    for pair in mine:
        out = pair_dir(run_dir, pair)
        a_paths, b_paths = pair_paths(samples, pair)
        trainer, checkpointer = build_pair_trainer(
            cg, pair, a_paths, b_paths, out, identity={**identity, "pair": list(pair)},
            seed=seed + pairs.index(pair), device=device, progress=progress)
        if resume and checkpointer.exists("last.pth"):
            trainer.load_state_dict(checkpointer.load("last.pth"))
        elif overwrite:
            clear_run_outputs(out, PAIR_OUTPUTS)
        trainer.train()
        wall = next(h for h in trainer.hooks if isinstance(h, WallClockHook))
        summary = {"pair": [pair[0] + 1, pair[1] + 1], "images": [len(a_paths), len(b_paths)],
                   "epochs": trainer.completed_epochs,
                   "iterations": trainer.completed_epochs * trainer.iters_per_epoch,
                   "train_seconds": wall.elapsed, "last_losses": trainer.losses,
                   "checkpoint": str(out / "last.pth")}
        atomic_write_json(out / "pair_train.json", summary)
        summaries[out.name] = summary
    return {"pairs": summaries, "shard": list(shard), "num_pairs": len(pairs)}
