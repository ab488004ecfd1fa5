"""The training loop: epochs of iterations, hooks around them, and an injected :class:`TrainStep`.

The loop is the same for source-supervised training and for every adaptation method; what
differs is the step (which batches it draws and which losses it returns, what it updates after
the optimiser step) and the hooks (evaluation, re-clustering, ...). Order of calls::

    before_train
    for epoch:  before_epoch (hooks) -> step.begin_epoch(epoch)
        for iteration:  before_step -> step.run(model) -> backward/optimiser -> step.after_update
                        -> after_step
                        (a step that ``owns_updates`` runs its optimisers inside ``run``)
        after_epoch
    after_train            (also when an epoch raised; the exception then propagates)

A checkpoint (``state_dict``) taken in ``after_epoch`` holds everything a resumed run needs to
continue bit-identically: model, optimiser, AMP scaler, the step's state (data samplers,
memories), hook states, finished epochs, metric history and every RNG state (every rank's
under torch.distributed).

Under torch.distributed (see :mod:`uda_reid.engine.distributed`) the gradients are averaged
over the ranks between backward and optimiser step, the buffers taken from rank 0 after it, and
the logged losses are the ranks' means.
"""
from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from uda_reid.engine.distributed import (average_gradients, broadcast_buffers, mean_over_ranks,
                                         restore_rng_states, rng_states)
from uda_reid.engine.events import EventStorage
from uda_reid.models.forward import forward_model, move_batch

if TYPE_CHECKING:
    from uda_reid.engine.hooks import HookBase

logger = logging.getLogger(__name__)


class TrainStep(ABC):
    """The per-iteration work injected into :class:`Trainer`.

    A step with ``owns_updates`` (e.g. a GAN's alternating generator and discriminator
    updates) runs its own optimisers inside :meth:`run`, returns its losses detached, and keeps
    the optimisers' states in its :meth:`state_dict`; the trainer then has no optimiser of its
    own and only records the losses.
    """

    owns_updates: bool = False

    def begin_epoch(self, epoch: int) -> None:
        """Called after the hooks' ``before_epoch`` and before the epoch's first iteration."""

    @abstractmethod
    def run(self, model: nn.Module) -> Dict[str, Tensor]:
        """Draw this iteration's data, run the model, return named scalar losses (summed); an
        empty dict means nothing to train on: no optimiser step and no ``after_update``."""

    def after_update(self, model: nn.Module) -> None:
        """Called after the optimiser step (e.g. memory or mean-teacher updates)."""

    def scalars(self) -> Dict[str, float]:
        """Extra values to log after each iteration (e.g. memory statistics)."""
        return {}

    def optimizers(self) -> List[torch.optim.Optimizer]:
        """The optimisers a step that ``owns_updates`` runs (for LR hooks and logging)."""
        return []

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs (sampler states, memories)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def _sampler_with_state(loader: Iterable) -> Optional[Any]:
    batch_sampler = getattr(loader, "batch_sampler", None)
    for candidate in (batch_sampler, getattr(loader, "sampler", None),
                      getattr(batch_sampler, "sampler", None)):
        if candidate is not None and hasattr(candidate, "state_dict"):
            return candidate
    return None


class BatchStream:
    """Endless batches from a loader: a fresh pass each epoch, and another whenever a pass
    runs out mid-epoch (a short target loader, ``ITERS_PER_EPOCH`` above one pass).

    Passes are numbered 0, 1, 2, ...; a sampler with ``set_epoch`` gets the pass number
    before each pass, so every pass draws a new order (a sampler seeded by the epoch alone
    would repeat its order within an epoch). The pass counter, the position in the current
    pass and the sampler's own ``state_dict`` when it has one are saved so a resumed run draws
    the same batches. ``begin_epoch(epoch)`` starts a pass (the epoch number itself is not
    needed); a step that never calls it (a stream spanning epochs) continues a restored pass
    at its position, through the sampler's ``skip_batches``.
    """

    def __init__(self, loader: Iterable, device: torch.device | str = "cpu") -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.passes = 0
        self.position = 0  # batches drawn from the current pass
        self._iterator: Optional[Iterator] = None

    def _open_pass(self, number: int, skip: int = 0) -> None:
        for sampler in (getattr(self.loader, "sampler", None),
                        getattr(self.loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(number)
        if skip:
            sampler = _sampler_with_state(self.loader)
            if not hasattr(sampler, "skip_batches"):
                raise ValueError("Resuming in the middle of a pass needs a sampler with "
                                 "skip_batches (uda_reid.data.samplers)")
            sampler.skip_batches(skip)
        self.position = skip
        self._iterator = iter(self.loader)

    def _new_pass(self) -> None:
        self._open_pass(self.passes)
        self.passes += 1

    def begin_epoch(self, epoch: int) -> None:
        self._new_pass()

    def next(self) -> Dict[str, Any]:
        """The next batch on the stream's device."""
        if self._iterator is None:
            if self.passes and self.position:  # restored in the middle of pass passes - 1
                self._open_pass(self.passes - 1, self.position)
            else:
                self._new_pass()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._new_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError("The training loader yields no batches (too few images or "
                                 "identities for one batch?)") from None
        self.position += 1
        return move_batch(batch, self.device)

    def state_dict(self) -> Dict[str, Any]:
        sampler = _sampler_with_state(self.loader)
        state: Dict[str, Any] = {"passes": self.passes, "position": self.position}
        if sampler is not None:
            state["sampler"] = sampler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.passes = int(state.get("passes", 0))
        self.position = int(state.get("position", 0))
        self._iterator = None
        if "sampler" in state:
            sampler = _sampler_with_state(self.loader)
            if sampler is None:
                raise ValueError("The checkpoint holds a sampler state but the loader's sampler "
                                 "has none to restore")
            sampler.load_state_dict(state["sampler"])


class SupervisedStep(TrainStep):
    """Source-supervised step: one labelled batch, ``loss_fn(outputs, pids)`` with the
    outputs of :func:`forward_model`; ``loss_fn`` returns ``{name: scalar}``."""

    def __init__(self, loader: Iterable, loss_fn, device: torch.device | str = "cpu") -> None:
        self.stream = BatchStream(loader, device)
        self.loss_fn = loss_fn

    def begin_epoch(self, epoch: int) -> None:
        self.stream.begin_epoch(epoch)

    def run(self, model: nn.Module) -> Dict[str, Tensor]:
        batch = self.stream.next()
        outputs = forward_model(model, batch)
        return self.loss_fn(outputs, batch["pids"])

    def state_dict(self) -> Dict[str, Any]:
        return {"stream": self.stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state.get("stream", {}))


class Trainer:
    """Runs ``max_epoch`` epochs of ``iters_per_epoch`` steps of ``step`` with ``hooks``.

    AMP (autocast + gradient scaling) is used only when ``amp`` is set and the device is CUDA.
    Attributes for hooks: ``model``, ``optimizer`` (None for a step that owns its updates;
    ``optimizers`` lists the ones in use), ``step``, ``epoch``, ``iter`` (global,
    0-based), ``max_epoch``, ``iters_per_epoch``, ``losses`` (last iteration's floats, with
    ``total``), ``metrics`` ({finished epoch: metrics} published by evaluation), ``storage``
    (the :class:`EventStorage` the writer hooks read: this epoch's means of the losses and
    step scalars, and the scalars hooks put).
    """

    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer],
                 step: TrainStep, max_epoch: int, iters_per_epoch: int,
                 hooks: Sequence["HookBase"] = (), device: torch.device | str = "cpu",
                 amp: bool = False) -> None:
        if (optimizer is None) != step.owns_updates:
            raise ValueError("a Trainer needs an optimizer exactly when its step does not run "
                             f"its own updates ({type(step).__name__}.owns_updates is "
                             f"{step.owns_updates})")
        if max_epoch <= 0 or iters_per_epoch <= 0:
            raise ValueError(f"max_epoch ({max_epoch}) and iters_per_epoch ({iters_per_epoch}) "
                             "must be positive")
        self.model = model
        self.optimizer = optimizer
        self.step = step
        self.max_epoch = max_epoch
        self.iters_per_epoch = iters_per_epoch
        self.device = torch.device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.start_epoch = 0
        self.completed_epochs = 0
        self.epoch = 0
        self.iter = 0
        self.losses: Dict[str, float] = {}
        self.metrics: Dict[int, Dict[str, Any]] = {}
        self.storage = EventStorage()
        self.hooks: List["HookBase"] = []
        self.register_hooks(hooks)

    @property
    def max_iter(self) -> int:
        return self.max_epoch * self.iters_per_epoch

    @property
    def optimizers(self) -> List[torch.optim.Optimizer]:
        """The trainer's optimiser, or those of a step that owns its updates."""
        return [self.optimizer] if self.optimizer is not None else self.step.optimizers()

    def register_hooks(self, hooks: Sequence["HookBase"]) -> None:
        """Append hooks; they run in registration order."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def _call(self, method: str) -> None:
        for hook in self.hooks:
            getattr(hook, method)()

    def train(self) -> None:
        """Run the remaining epochs (from ``start_epoch``)."""
        logger.info("Training epochs %d..%d, %d iterations each", self.start_epoch + 1,
                    self.max_epoch, self.iters_per_epoch)
        self.model.train()
        self._call("before_train")
        try:
            self._run_epochs()
        except BaseException:
            self._after_train_after_failure()
            raise
        self._call("after_train")

    def _run_epochs(self) -> None:
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.storage.epoch_means.reset()
            self._call("before_epoch")
            self.step.begin_epoch(epoch)
            for i in range(self.iters_per_epoch):
                self.iter = epoch * self.iters_per_epoch + i
                self._call("before_step")
                self.run_step()
                self.storage.epoch_means.add({**self.losses, **self.step.scalars()})
                self._call("after_step")
            self.completed_epochs = epoch + 1
            self._call("after_epoch")

    def _after_train_after_failure(self) -> None:
        """Every hook's ``after_train`` once training failed (closing writers and files); a
        hook that fails here is logged, so that the training's own exception propagates."""
        for hook in self.hooks:
            try:
                hook.after_train()
            except Exception:
                logger.exception("%s.after_train failed after a training error",
                                 type(hook).__name__)

    def run_step(self) -> None:
        """One optimisation step over the step's losses."""
        if self.step.owns_updates:  # ``total``: the sum of what the step reports, for logs
            losses = {k: float(v) for k, v in self.step.run(self.model).items()}
            losses["total"] = sum(losses.values())
            if not math.isfinite(losses["total"]):
                raise FloatingPointError(f"Loss is not finite at iteration {self.iter}: {losses}")
            self.losses = mean_over_ranks(losses)
            return
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            losses = self.step.run(self.model)
        if not losses:  # nothing to train on (e.g. a degenerate pseudo-label round): no update
            self.losses = {"total": 0.0}
            return
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"Loss is not finite at iteration {self.iter}: "
                                     f"{ {k: float(v.detach()) for k, v in losses.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        average_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step.after_update(self.model)
        broadcast_buffers(self.model)
        self.losses = {k: float(v.detach()) for k, v in losses.items()}
        self.losses["total"] = float(total.detach())
        self.losses = mean_over_ranks(self.losses)

    def _keyed_hooks(self) -> Dict[str, "HookBase"]:
        """Hooks keyed by their ``state_name`` (``EvalHook``, ``EvalHook.1`` for a second
        one)."""
        keyed: Dict[str, "HookBase"] = {}
        for hook in self.hooks:
            name = hook.state_name
            key, n = name, 0
            while key in keyed:
                n += 1
                key = f"{name}.{n}"
            keyed[key] = hook
        return keyed

    def _hook_states(self) -> Dict[str, Dict[str, Any]]:
        return {key: hook.state_dict() for key, hook in self._keyed_hooks().items()}

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue after the last finished epoch."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scaler": self.scaler.state_dict(),
            "step": self.step.state_dict(),
            "hooks": {k: v for k, v in self._hook_states().items() if v},
            "epoch": self.completed_epochs,
            "iteration": self.completed_epochs * self.iters_per_epoch,
            "metrics": self.metrics,
            "rng": rng_states(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; training then continues at the next epoch."""
        hooks = self._keyed_hooks()
        unknown = sorted(set(state["hooks"]) - set(hooks))
        if unknown:
            raise ValueError(f"The checkpoint holds states of hooks this trainer lacks: {unknown}")
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step.load_state_dict(state["step"])
        for key, hook_state in state["hooks"].items():
            hooks[key].load_state_dict(hook_state)
        self.completed_epochs = self.start_epoch = int(state["epoch"])
        self.iter = int(state["iteration"])
        self.metrics = dict(state["metrics"])
        restore_rng_states(state["rng"])
