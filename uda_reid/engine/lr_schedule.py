"""Learning-rate schedule: warm-up, then multi-step or cosine decay (FastReID semantics).

The learning rate is a pure function of the iteration, so a resumed run needs no scheduler
state. FastReID steps its warm-up every iteration and its main schedule at the end of each
epoch once warm-up and ``DELAY_EPOCHS`` are over; the main schedule's clock therefore starts at
epoch ``k0 = max(floor(warmup_iters / iters_per_epoch), delay_epochs)`` and its milestones and
cosine period are counted from there. With ``unit="iter"`` the clock advances every iteration
(fractional epochs) instead of at epoch ends.
"""
from __future__ import annotations

import bisect
import math
from typing import Sequence

from torch.optim import Optimizer

from uda_reid.config.sections.solver import SolverConfig

SCHEDULES = ("multistep", "cosine")
WARMUP_METHODS = ("linear", "constant")
UNITS = ("epoch", "iter")
# SOLVER.SCHED names (case-insensitive) -> schedule
_SCHED_NAMES = {"multisteplr": "multistep", "multistep": "multistep",
                "cosineannealinglr": "cosine", "cosine": "cosine"}


def warmup_factor(iteration: int, warmup_iters: int, factor: float, method: str) -> float:
    """Multiplier of the base LR at ``iteration`` (0-based) during warm-up, 1 afterwards.

    linear: ``factor * (1 - a) + a`` with ``a = iteration / warmup_iters``; constant: ``factor``.
    """
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return factor * (1.0 - alpha) + alpha
    raise ValueError(f"SOLVER.WARMUP_METHOD: unknown warm-up method '{method}' "
                     "(use 'linear' or 'constant')")


def multistep_factor(t: float, steps: Sequence[int], gamma: float) -> float:
    """``gamma ** (number of milestones <= t)``."""
    return gamma ** bisect.bisect_right(sorted(steps), t)


def cosine_lr(base_lr: float, t: float, t_max: float, eta_min: float) -> float:
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2``."""
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t / t_max)) / 2.0


def main_start_epoch(iters_per_epoch: int, warmup_iters: int, delay_epochs: int) -> int:
    """First epoch at whose end FastReID steps the main schedule."""
    return max(warmup_iters // iters_per_epoch, delay_epochs)


def schedule_time(iteration: int, iters_per_epoch: int, warmup_iters: int, delay_epochs: int,
                  unit: str) -> float:
    """The main schedule's clock (in epochs) during ``iteration``."""
    start = main_start_epoch(iters_per_epoch, warmup_iters, delay_epochs)
    if unit == "epoch":
        return float(max(0, iteration // iters_per_epoch - start))
    if unit == "iter":
        return max(0.0, (iteration - start * iters_per_epoch) / iters_per_epoch)
    raise ValueError(f"SOLVER.SCHED_UNIT: unknown unit '{unit}' (use 'epoch' or 'iter')")


class WarmupLRScheduler:
    """Sets every param group's ``lr`` from its ``initial_lr`` for a given iteration.

    lr(it) = warmup_factor(it) * main(initial_lr, t(it)) where ``main`` is multi-step
    (``initial_lr * gamma**k``) or cosine annealing to ``eta_min`` over
    ``t_max = max_epoch - max(ceil(warmup_iters / iters_per_epoch), delay_epochs)`` epochs.
    """

    def __init__(self, optimizer: Optimizer, iters_per_epoch: int, max_epoch: int,
                 schedule: str = "multistep", steps: Sequence[int] = (),
                 gamma: float = SolverConfig.GAMMA, eta_min: float = 0.0,
                 warmup_iters: int = SolverConfig.WARMUP_ITERS,
                 warmup_factor: float = SolverConfig.WARMUP_FACTOR,
                 warmup_method: str = SolverConfig.WARMUP_METHOD,
                 delay_epochs: int = SolverConfig.DELAY_EPOCHS,
                 unit: str = SolverConfig.SCHED_UNIT) -> None:
        if iters_per_epoch <= 0:
            raise ValueError(f"iters_per_epoch must be positive, got {iters_per_epoch}")
        if schedule not in SCHEDULES:
            raise ValueError(f"SOLVER.SCHED: unknown schedule '{schedule}' "
                             "(use MultiStepLR or CosineAnnealingLR)")
        self.optimizer = optimizer
        self.iters_per_epoch = iters_per_epoch
        self.schedule = schedule
        self.steps = tuple(steps)
        self.gamma = gamma
        self.eta_min = eta_min
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.warmup_method = warmup_method
        self.delay_epochs = delay_epochs
        self.unit = unit
        self.t_max = max_epoch - max(math.ceil(warmup_iters / iters_per_epoch), delay_epochs)
        if schedule == "cosine" and self.t_max <= 0:
            raise ValueError(f"SOLVER.MAX_EPOCH={max_epoch} leaves no epochs for the cosine "
                             f"schedule after warm-up ({warmup_iters} iterations) and "
                             f"DELAY_EPOCHS={delay_epochs}")
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"SOLVER.WARMUP_METHOD: unknown warm-up method '{warmup_method}' "
                             "(use 'linear' or 'constant')")
        if unit not in UNITS:
            raise ValueError(f"SOLVER.SCHED_UNIT: unknown unit '{unit}' (use 'epoch' or 'iter')")
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    @classmethod
    def from_config(cls, opts: SolverConfig, optimizer: Optimizer, iters_per_epoch: int
                    ) -> "WarmupLRScheduler":
        """The schedule of the ``SOLVER`` section (``SCHED``, ``STEPS``, ``WARMUP_*``, ...)."""
        name = _SCHED_NAMES.get(opts.SCHED.lower())
        if name is None:
            raise ValueError(f"SOLVER.SCHED: unknown schedule '{opts.SCHED}' "
                             "(use MultiStepLR or CosineAnnealingLR)")
        return cls(optimizer, iters_per_epoch, opts.MAX_EPOCH, schedule=name, steps=opts.STEPS,
                   gamma=opts.GAMMA, eta_min=opts.ETA_MIN_LR, warmup_iters=opts.WARMUP_ITERS,
                   warmup_factor=opts.WARMUP_FACTOR, warmup_method=opts.WARMUP_METHOD.lower(),
                   delay_epochs=opts.DELAY_EPOCHS, unit=opts.SCHED_UNIT.lower())

    def _warmup(self, iteration: int) -> float:
        return warmup_factor(iteration, self.warmup_iters, self.warmup_factor,
                             self.warmup_method)

    def lr_at(self, base_lr: float, iteration: int) -> float:
        """Learning rate of a group whose initial LR is ``base_lr`` during ``iteration``."""
        t = schedule_time(iteration, self.iters_per_epoch, self.warmup_iters,
                          self.delay_epochs, self.unit)
        if self.schedule == "multistep":
            main = base_lr * multistep_factor(t, self.steps, self.gamma)
        else:
            main = cosine_lr(base_lr, t, self.t_max, self.eta_min)
        return self._warmup(iteration) * main

    def set_iteration(self, iteration: int) -> None:
        """Write the learning rates for ``iteration`` into the optimiser."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(group["initial_lr"], iteration)


def linear_decay_factor(epoch: int, flat_epochs: int, decay_epochs: int) -> float:
    """LR multiplier during 0-based ``epoch``: 1 for ``flat_epochs`` epochs, then lower by
    ``1 / (decay_epochs + 1)`` each epoch, ``1 / (decay_epochs + 1)`` in the last one
    (CycleGAN's linear policy, junyanz/pytorch-CycleGAN-and-pix2pix ``lr_policy lambda``):
    ``1 - max(0, epoch + 1 - flat_epochs) / (decay_epochs + 1)``."""
    return 1.0 - max(0, epoch + 1 - flat_epochs) / (decay_epochs + 1)


def linear_to_zero_factor(epoch: int, max_epoch: int, decay_epochs: int) -> float:
    """LR multiplier during 0-based ``epoch``: 1, then over the last ``decay_epochs`` epochs
    ``(max_epoch - epoch) / decay_epochs``, linearly towards zero (StarGAN's decay, counted in
    iterations there)."""
    start = max_epoch - decay_epochs
    if decay_epochs <= 0 or epoch < start:
        return 1.0
    return max(0.0, (max_epoch - epoch) / decay_epochs)


def build_lr_scheduler(cfg, optimizer: Optimizer, iters_per_epoch: int) -> WarmupLRScheduler:
    """Entry point for the run flows: :meth:`WarmupLRScheduler.from_config` of ``cfg.SOLVER``."""
    return WarmupLRScheduler.from_config(cfg.SOLVER, optimizer, iters_per_epoch)
