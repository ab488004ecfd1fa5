"""Checkpoints of the StarGAN loop that trained CamStyle before the shared trainer, read as the
shared trainer's state so that ``tools/camstyle.py train --resume`` continues them.

That loop saved ``last.pth`` as ``{"trainer": {"generator", "discriminator", "g_optimizer",
"d_optimizer", "iteration"}, "stream": {"epoch", "offset"}, "rng", "model_spec", "dataset",
"train_seconds", "train_cpu_seconds"}``: the networks' and both Adam optimisers' states, the
number of finished iterations, the batch stream's position (``offset`` batches of pass
``epoch`` drawn; pass ``e`` is ``torch.randperm`` seeded ``SEED + e``, cut into full batches,
the order :class:`~uda_reid.data.samplers.TorchShuffledBatchSampler` draws), the random
generators (:func:`~uda_reid.engine.seed.get_rng_states`) and the training clock. Each maps onto
its place in :meth:`~uda_reid.engine.trainer.Trainer.state_dict`. What has no counterpart
starts afresh: the trainer's published metrics (StarGAN has none) and the TensorBoard
averages of the log period under way.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Mapping

from camstyle.config import SPEC_BEFORE_OPTIONS
from uda_reid.engine.checkpoint import CheckpointMismatchError
from uda_reid.engine.trainer import Trainer


def is_loop_checkpoint(state: Any) -> bool:
    """Whether ``state`` (a loaded ``last.pth``) was written by the earlier StarGAN loop."""
    return isinstance(state, Mapping) and "trainer" in state and "stream" in state


def loop_trainer_state(state: Mapping[str, Any], trainer: Trainer, spec: Mapping[str, Any],
                       dataset: str) -> Dict[str, Any]:
    """The state of the StarGAN ``trainer`` (freshly built by
    :func:`camstyle.stargan_train.build_stargan_trainer`, not trained yet) that continues the
    loop checkpoint ``state``; its model spec and dataset must be ``spec`` and ``dataset``."""
    saved_spec = {**SPEC_BEFORE_OPTIONS, **state.get("model_spec", {})}
    if saved_spec != dict(spec) or state.get("dataset") != dataset:
        raise CheckpointMismatchError(
            f"--resume: the checkpoint was trained for {state.get('dataset')!r} with the networks "
            f"{saved_spec}; this run is for {dataset!r} with {dict(spec)}")
    loop = state["trainer"]
    fresh = trainer.state_dict()
    step = trainer.step
    optimizers = {}
    for key, optimizer in (("g_optimizer", step.g_optimizer), ("d_optimizer", step.d_optimizer)):
        saved = copy.deepcopy(loop[key])
        # the loop kept the decayed rate only; the trainer's LR hook scales the initial one
        for group, base in zip(saved["param_groups"], optimizer.param_groups):
            group["initial_lr"] = base.get("initial_lr", base["lr"])
        optimizers[key] = saved
    iteration = int(loop["iteration"])
    passes, position = int(state["stream"]["epoch"]), int(state["stream"]["offset"])
    stream = fresh["step"]["stream"]
    sampler = {**stream["sampler"], "epoch": passes}
    model = {**{f"generator.{k}": v for k, v in loop["generator"].items()},
             **{f"discriminator.{k}": v for k, v in loop["discriminator"].items()}}
    return {**fresh, "model": model, "epoch": iteration,
            "iteration": iteration * trainer.iters_per_epoch, "metrics": {},
            "rng": state["rng"],
            "step": {**fresh["step"], **optimizers, "iterations": iteration,
                     "stream": {"passes": passes + 1 if position else passes,
                                "position": position, "sampler": sampler}},
            "hooks": {**fresh["hooks"],
                      "WallClockHook": {"elapsed": float(state.get("train_seconds", 0.0)),
                                        "cpu_elapsed": float(state.get("train_cpu_seconds",
                                                                       0.0))}}}
