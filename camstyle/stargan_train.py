"""Training the StarGAN of a dataset on the shared trainer.

StarGAN counts in iterations: each trainer epoch is one iteration, so the epoch-periodic hooks
give its iteration-periodic schedule: the LR decay (flat, then linear to zero over the last
``LR_DECAY_ITERS``), TensorBoard scalars every ``LOG_PERIOD``, the sample image every
``SAMPLE_PERIOD``, and ``last.pth`` with the sample sheet ``samples/iter_XXXXXXX.png`` every
``CHECKPOINT_PERIOD`` and at the end. Resuming from ``last.pth`` continues bit-identically (the
batch stream resumes in the middle of its pass; with data workers, exactly as long as their
flips are re-drawn per pass), also from a ``last.pth`` of the StarGAN loop before the shared
trainer (:mod:`camstyle.loop_checkpoint`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from camstyle.config import build_stargan, model_spec
from camstyle.data import CameraImageDataset, CameraSample
from camstyle.loop_checkpoint import is_loop_checkpoint, loop_trainer_state
from camstyle.sample_sheets import SampleImageHook, SampleSheetHook
from camstyle.stargan_step import StarGANStep, sample_grid, sample_images
from uda_reid.data.samplers import TorchShuffledBatchSampler
from uda_reid.engine.checkpoint import Checkpointer
from uda_reid.engine.hooks import (CheckpointHook, EpochLRFactorHook, ProgressHook,
                                   TensorBoardHook, WallClockHook)
from uda_reid.engine.lr_schedule import linear_to_zero_factor
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer import Trainer
from uda_reid.utils.safe_load import load_weights_file


def build_stargan_trainer(cs: Any, samples: Sequence[CameraSample], num_cameras: int,
                          out_dir: str | Path, *, identity: Mapping[str, Any],
                          meta: Mapping[str, Any], seed: int,
                          device: torch.device | str = "cpu", progress: bool = True
                          ) -> Tuple[Trainer, Checkpointer]:
    """The shared trainer for the StarGAN of the CAMSTYLE section ``cs`` on ``samples``
    (networks seeded by ``seed``, batches ordered by ``seed``), writing into ``out_dir``; the
    checkpointer carries ``identity`` and ``meta`` (with the model spec added)."""
    out_dir = Path(out_dir)
    images = CameraImageDataset(samples, cs.IMAGE_SIZE, cs.FLIP)
    if len(images) < cs.BATCH_SIZE:
        raise ValueError(f"{len(images)} training images are fewer than the batch size "
                         f"{cs.BATCH_SIZE} (CAMSTYLE.BATCH_SIZE)")
    seed_everything(seed)
    model = build_stargan(model_spec(cs, num_cameras)).to(device)
    sampler = TorchShuffledBatchSampler(len(images), cs.BATCH_SIZE, seed=seed)
    loader = DataLoader(images, batch_sampler=sampler, num_workers=cs.NUM_WORKERS,
                        generator=sampler.generator)
    step = StarGANStep.from_config(cs, model, loader, device)
    checkpointer = Checkpointer(out_dir, identity,
                                {**meta, "model_spec": model_spec(cs, num_cameras)})
    sheet = sample_images(images, cs.NUM_SAMPLE_IMAGES)
    render = functools.partial(sample_grid, model.generator, sheet)
    board = TensorBoardHook(out_dir / "tensorboard", cs.LOG_PERIOD)
    hooks = [EpochLRFactorHook(functools.partial(linear_to_zero_factor, max_epoch=cs.MAX_ITERS,
                                                 decay_epochs=cs.LR_DECAY_ITERS)),
             ProgressHook(progress, cs.CHECKPOINT_PERIOD, unit="iteration"), board,
             SampleImageHook(render, board, cs.SAMPLE_PERIOD), WallClockHook(),
             CheckpointHook(checkpointer, cs.CHECKPOINT_PERIOD),
             SampleSheetHook(render, out_dir / "samples", cs.CHECKPOINT_PERIOD,
                             "iter_{:07d}.png")]
    return Trainer(model, None, step, cs.MAX_ITERS, 1, hooks, device), checkpointer


def resume_state(trainer: Trainer, checkpointer: Checkpointer) -> Dict[str, Any]:
    """``last.pth`` as the state of ``trainer`` (built by :func:`build_stargan_trainer`):
    a checkpoint of the shared trainer (its identity checked) or one of the earlier StarGAN
    loop (converted; its networks and dataset must be the checkpointer's meta's)."""
    path = checkpointer.path("last.pth")
    state = load_weights_file(path, "CamStyle checkpoint")
    if is_loop_checkpoint(state):
        return loop_trainer_state(state, trainer, checkpointer.meta["model_spec"],
                                  checkpointer.meta["dataset"])
    return checkpointer.check(state, path)
