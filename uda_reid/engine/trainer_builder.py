"""The shared trainer with the standard hooks for a run's config, and resuming it.

Adaptation methods reuse :func:`build_trainer` (optimiser, LR schedule, freezing, evaluation,
TensorBoard, progress and checkpoint hooks around their own :class:`TrainStep`) and
:func:`resume_or_start`."""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from torch import nn

from uda_reid.config import Config
from uda_reid.engine.checkpoint import Checkpointer
from uda_reid.engine.device import resolve_device
from uda_reid.engine.distributed import prepare_ranks
from uda_reid.engine.freeze import FreezeHook
from uda_reid.engine.hooks import (CheckpointHook, EvalHook, HookBase, LRSchedulerHook,
                                   Metrics, ProgressHook, TensorBoardHook, WallClockHook)
from uda_reid.engine.lr_schedule import build_lr_scheduler
from uda_reid.engine.optim import build_optimizer_from_config
from uda_reid.engine.output_dir import config_identity, saved_config_identity
from uda_reid.engine.trainer import Trainer, TrainStep
from uda_reid.utils.distributed import is_main_process

logger = logging.getLogger(__name__)


def build_trainer(cfg: Config, model: nn.Module, step: TrainStep, iters_per_epoch: int,
                  eval_fn: Optional[Callable[[], Metrics]] = None,
                  extra_hooks: Sequence[HookBase] = (), best_dataset: Optional[str] = None,
                  meta: Optional[Mapping[str, Any]] = None, keep_best: bool = True
                  ) -> Tuple[Trainer, Checkpointer]:
    """The shared trainer for ``step`` with the standard hooks, in this order: LR schedule,
    freezing (``SOLVER.FREEZE_ITERS`` > 0), wall clock, progress (tqdm on a terminal),
    ``extra_hooks``, evaluation
    (every ``TEST.EVAL_PERIOD`` epochs and at the end; with ``keep_best`` also ``best.pth`` by
    ``best_dataset`` mAP),
    TensorBoard, checkpoint (``last.pth`` every ``SOLVER.CHECKPOINT_PERIOD`` epochs).

    The model must already be on ``MODEL.DEVICE``; ``meta`` is stored in every checkpoint.
    """
    device = resolve_device(cfg.MODEL.DEVICE)
    prepare_ranks(model, cfg.SEED)
    optimizer = build_optimizer_from_config(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer, iters_per_epoch)
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, config_identity(cfg), meta,
                                read_identity=saved_config_identity)
    hooks: List[HookBase] = [LRSchedulerHook(scheduler)]
    if cfg.SOLVER.FREEZE_ITERS > 0:
        hooks.append(FreezeHook(model, cfg.SOLVER.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS))
    hooks += [WallClockHook(), ProgressHook(enabled=sys.stderr.isatty() and is_main_process()),
              *extra_hooks]
    if eval_fn is not None:
        hooks.append(EvalHook(eval_fn, cfg.TEST.EVAL_PERIOD,
                              checkpointer if keep_best else None, best_dataset))
    hooks += [TensorBoardHook(cfg.OUTPUT_DIR), CheckpointHook(checkpointer,
                                                              cfg.SOLVER.CHECKPOINT_PERIOD)]
    trainer = Trainer(model, optimizer, step, cfg.SOLVER.MAX_EPOCH, iters_per_epoch, hooks,
                      device, cfg.SOLVER.AMP)
    return trainer, checkpointer


def resume_or_start(trainer: Trainer, checkpointer: Checkpointer, resume: bool) -> bool:
    """With ``resume``, load ``last.pth`` when it exists (its config must match); returns
    whether a checkpoint was loaded."""
    if not resume:
        return False
    if not checkpointer.exists("last.pth"):
        logger.warning("--resume: no %s yet, starting from scratch", checkpointer.path("last.pth"))
        return False
    trainer.load_state_dict(checkpointer.load("last.pth"))
    logger.info("Resumed from %s after epoch %d", checkpointer.path("last.pth"),
                trainer.start_epoch)
    return True
