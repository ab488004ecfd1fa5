"""Trainer hooks: LR schedule, evaluation, checkpoints, TensorBoard, progress."""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from uda_reid.engine.checkpoint import Checkpointer
from uda_reid.engine.events import EpochMeans
from uda_reid.engine.lr_schedule import WarmupLRScheduler
from uda_reid.utils.distributed import is_main_process
from uda_reid.utils.errors import UnknownNameError

if TYPE_CHECKING:
    from uda_reid.engine.trainer import Trainer

logger = logging.getLogger(__name__)

Metrics = Dict[str, Dict[str, float]]  # {test dataset: {"mAP": .., "rank1": .., ...}}


class HookBase:
    """Base class: every method is a no-op; ``trainer`` is set when the hook is registered."""

    trainer: "Trainer"

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    @property
    def state_name(self) -> str:
        """The key of this hook's state in a checkpoint (its class name)."""
        return type(self).__name__

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def is_period_end(epoch: int, period: int, max_epoch: int) -> bool:
    """True after 0-based ``epoch`` when ``epoch + 1`` is a multiple of ``period`` (> 0) or
    the last epoch."""
    return (period > 0 and (epoch + 1) % period == 0) or epoch + 1 == max_epoch


class LRSchedulerHook(HookBase):
    """Sets the learning rates for each iteration before it runs."""

    def __init__(self, scheduler: WarmupLRScheduler) -> None:
        self.scheduler = scheduler

    def before_step(self) -> None:
        self.scheduler.set_iteration(self.trainer.iter)


class EpochLRFactorHook(HookBase):
    """Before each epoch, sets every param group of the trainer's optimisers to its initial LR
    times ``factor(epoch)`` (0-based); a pure function of the epoch, so resuming needs no
    state."""

    def __init__(self, factor: Callable[[int], float]) -> None:
        self.factor = factor

    def before_epoch(self) -> None:
        factor = self.factor(self.trainer.epoch)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor


class EvalHook(HookBase):
    """Calls ``eval_fn() -> {dataset: {metric: value}}`` every ``period`` epochs and at the end.

    The metrics are published in ``trainer.metrics[epoch]`` (1-based finished epochs). When a
    ``checkpointer`` is given, ``best.pth`` (model weights) is written whenever
    ``metrics[best_dataset][best_metric]`` improves (``best_dataset`` defaults to the first
    dataset returned).
    """

    def __init__(self, eval_fn: Callable[[], Metrics], period: int,
                 checkpointer: Optional[Checkpointer] = None, best_dataset: Optional[str] = None,
                 best_metric: str = "mAP") -> None:
        self.eval_fn = eval_fn
        self.period = period
        self.checkpointer = checkpointer
        self.best_dataset = best_dataset
        self.best_metric = best_metric
        self.best_value = float("-inf")
        self.best_epoch = 0

    def after_epoch(self) -> None:
        trainer = self.trainer
        if not is_period_end(trainer.epoch, self.period, trainer.max_epoch):
            return
        epoch = trainer.epoch + 1
        metrics = self.eval_fn()
        trainer.metrics[epoch] = metrics
        for dataset, values in metrics.items():
            logger.info("Epoch %d evaluation on %s: %s", epoch, dataset,
                        ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        dataset = self.best_dataset or next(iter(metrics))
        if dataset not in metrics or self.best_metric not in metrics[dataset]:
            raise UnknownNameError(f"Evaluation returned no {self.best_metric} for '{dataset}' "
                                   f"(got {sorted(metrics)})")
        value = metrics[dataset][self.best_metric]
        if value > self.best_value:
            self.best_value, self.best_epoch = value, epoch
            if self.checkpointer is not None:
                self.checkpointer.save("best.pth", {"model": trainer.model.state_dict(),
                                                    "epoch": epoch, "metrics": metrics})
                logger.info("New best %s %s %.4f: saved best.pth", dataset, self.best_metric,
                            value)

    def state_dict(self) -> Dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_value = state["best_value"]
        self.best_epoch = state["best_epoch"]


class CheckpointHook(HookBase):
    """Writes the trainer's full state to ``last.pth`` every ``period`` epochs and at the end.

    Register it last so that the saved state includes what the other hooks did this epoch.
    """

    def __init__(self, checkpointer: Checkpointer, period: int) -> None:
        self.checkpointer = checkpointer
        self.period = period

    def after_epoch(self) -> None:
        trainer = self.trainer
        if is_period_end(trainer.epoch, self.period, trainer.max_epoch):
            path = self.checkpointer.save("last.pth", trainer.state_dict())
            logger.info("Saved %s (epoch %d)", path, trainer.epoch + 1)


def current_lr(trainer: "Trainer") -> float:
    """LR of the parameter group with the most parameters (of the trainer's first optimiser)."""
    group = max(trainer.optimizers[0].param_groups, key=lambda g: len(g["params"]))
    return float(group["lr"])


class _NoWriter:
    """What the ranks other than 0 write TensorBoard events with: nothing."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def summary_writer(log_dir: os.PathLike | str, **kwargs: Any) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` (rank 0 only under torch.distributed;
    the other ranks get a writer that discards)."""
    if not is_main_process():
        return _NoWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), **kwargs)


class WriterHook(HookBase):
    """Base of the hooks writing TensorBoard events: ``writer`` (:func:`summary_writer` on
    ``log_dir``, files ending in ``filename_suffix``) is open from ``before_train`` to
    ``after_train``."""

    def __init__(self, log_dir: os.PathLike | str, filename_suffix: str = "") -> None:
        self.log_dir = str(log_dir)
        self.filename_suffix = filename_suffix
        self.writer = None

    def before_train(self) -> None:
        self.writer = summary_writer(self.log_dir, filename_suffix=self.filename_suffix)

    def after_train(self) -> None:
        self.writer.close()


class TensorBoardHook(WriterHook):
    """Writes losses, LR and step scalars every ``period`` iterations, metrics per epoch, and
    the scalars hooks put into the trainer's storage (at the next of these writes, or at the
    end)."""

    def __init__(self, log_dir: os.PathLike | str, period: int = 20) -> None:
        super().__init__(log_dir)
        self.period = max(1, period)

    def _write_stored(self) -> None:
        for name, value, step in self.trainer.storage.pop_scalars():
            self.writer.add_scalar(name, value, step)

    def after_step(self) -> None:
        trainer = self.trainer
        step = trainer.iter + 1
        if step % self.period and step != trainer.max_iter:
            return
        for name, value in trainer.losses.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", current_lr(trainer), step)
        for name, value in trainer.step.scalars().items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self._write_stored()

    def after_epoch(self) -> None:
        epoch = self.trainer.epoch + 1
        for dataset, values in self.trainer.metrics.get(epoch, {}).items():
            for name, value in values.items():
                self.writer.add_scalar(f"{dataset}/{name}", value, epoch)
        self._write_stored()
        self.writer.flush()

    def after_train(self) -> None:
        self._write_stored()
        super().after_train()


class WallClockHook(HookBase):
    """Accumulates training wall time and process CPU time over the runs of a resumed job
    (``elapsed`` and ``cpu_elapsed`` seconds)."""

    def __init__(self) -> None:
        self.previous, self.previous_cpu = 0.0, 0.0
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def before_train(self) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    @property
    def elapsed(self) -> float:
        return self.previous + time.perf_counter() - self._start

    @property
    def cpu_elapsed(self) -> float:
        return self.previous_cpu + time.process_time() - self._cpu_start

    def state_dict(self) -> Dict[str, Any]:
        return {"elapsed": self.elapsed, "cpu_elapsed": self.cpu_elapsed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = float(state["elapsed"])
        self.previous_cpu = float(state.get("cpu_elapsed", 0.0))


class ProgressHook(HookBase):
    """A tqdm bar per ``period`` epochs and a log line with their mean losses and step scalars
    (the means of the epochs' means in the trainer's storage), LR and time.

    ``unit`` names what an epoch is in the messages (a StarGAN counts ``iteration``s: each of
    its epochs is one iteration)."""

    def __init__(self, enabled: bool = True, period: int = 1, unit: str = "epoch") -> None:
        self.enabled = enabled
        self.period = max(1, period)
        self.unit = unit
        self._bar = None
        self._means = EpochMeans()
        self._start = 0.0
        self._first = 0

    def _span(self, first: int, last: int) -> str:
        """``epoch 3/10`` or ``epochs 3-5/10`` (1-based)."""
        total = self.trainer.max_epoch
        return (f"{self.unit} {first + 1}/{total}" if first == last
                else f"{self.unit}s {first + 1}-{last + 1}/{total}")

    def before_epoch(self) -> None:
        if self._bar is not None:
            return
        from tqdm import tqdm

        trainer = self.trainer
        self._first = trainer.epoch
        last = min((trainer.epoch // self.period + 1) * self.period, trainer.max_epoch) - 1
        self._bar = tqdm(total=(last - trainer.epoch + 1) * trainer.iters_per_epoch,
                         disable=not self.enabled, leave=False,
                         desc=self._span(trainer.epoch, last))
        self._means.reset()
        self._start = time.perf_counter()

    def after_step(self) -> None:
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{self.trainer.losses['total']:.3f}")

    def after_epoch(self) -> None:
        trainer = self.trainer
        self._means.add(trainer.storage.epoch_means.means())
        if not is_period_end(trainer.epoch, self.period, trainer.max_epoch):
            return
        self._bar.close()
        self._bar = None
        means = ", ".join(f"{k} {v:.4f}" for k, v in self._means.means().items())
        span = self._span(self._first, trainer.epoch)
        logger.info("%s done (iteration %d): %s, lr %.3g, %.1f s", span[0].upper() + span[1:],
                    trainer.iter + 1, means, current_lr(trainer),
                    time.perf_counter() - self._start)
