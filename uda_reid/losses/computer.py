"""The training objective: named, weighted losses over the model's training outputs.

A registered loss builder maps the ``MODEL.LOSSES`` section onto a :class:`WeightedLoss`
(output name, term, scale). :class:`LossComputer` evaluates the terms on the model's training
dict (``logits``, ``features``, ``embedding``; each a tensor or a JPM list
``[global, locals...]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Sequence, Union

import torch

from uda_reid.config.sections.model import (CircleConfig, CrossEntropyConfig, LossesConfig,
                                            TripletConfig)
from uda_reid.losses.functional import circle_loss, cross_entropy_smooth, triplet_loss
from uda_reid.losses.registry import LOSSES
from uda_reid.utils.errors import UnknownNameError

Output = Union[torch.Tensor, List[torch.Tensor]]
Outputs = Dict[str, Output]
LossTerm = Callable[[Outputs, torch.Tensor], torch.Tensor]


class WeightedLoss(NamedTuple):
    """One term of the objective: reported as ``name``, multiplied by ``scale``."""

    name: str
    term: LossTerm
    scale: float


def over_branches(value: Output, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` of a tensor, or ``0.5 fn(global) + 0.5 mean(fn(local_i))`` for a list (JPM)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if len(value) == 1:
        return fn(value[0])
    return 0.5 * fn(value[0]) + 0.5 * torch.stack([fn(v) for v in value[1:]]).mean()


def output(outputs: Outputs, key: str, loss: str) -> Output:
    """``outputs[key]`` with an error naming the loss that needs it."""
    if key not in outputs:
        raise UnknownNameError(f"{loss} needs the model output '{key}'; the model returned "
                               f"{sorted(outputs)}")
    return outputs[key]


@dataclass
class CrossEntropyTerm:
    """Label-smoothed cross-entropy on ``logits``."""

    epsilon: float = CrossEntropyConfig.EPSILON

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(output(outputs, "logits", "CrossEntropyLoss"),
                             lambda x: cross_entropy_smooth(x, targets, self.epsilon))


@dataclass
class TripletTerm:
    """Triplet loss on the pre-BNNeck ``features``."""

    margin: float = TripletConfig.MARGIN
    hard_mining: bool = TripletConfig.HARD_MINING
    cosine: bool = TripletConfig.NORM_FEAT

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(output(outputs, "features", "TripletLoss"), lambda x: triplet_loss(
            x, targets, self.margin, self.hard_mining, self.cosine))


@dataclass
class CircleTerm:
    """Pairwise circle loss on the pre-BNNeck ``features``."""

    margin: float = CircleConfig.MARGIN
    gamma: float = CircleConfig.GAMMA

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(output(outputs, "features", "CircleLoss"),
                             lambda x: circle_loss(x, targets, self.margin, self.gamma))


# Each registered loss is built as ``LOSSES.get(name)(section)`` from ``MODEL.LOSSES``.
@LOSSES.register("crossentropyloss", aliases=("ce", "cross_entropy"))
def build_ce(opts: LossesConfig) -> WeightedLoss:
    ce = opts.CE
    return WeightedLoss("loss_cls", CrossEntropyTerm(ce.EPSILON), ce.SCALE)


@LOSSES.register("tripletloss", aliases=("triplet",))
def build_triplet(opts: LossesConfig) -> WeightedLoss:
    tri = opts.TRI
    return WeightedLoss("loss_triplet", TripletTerm(tri.MARGIN, tri.HARD_MINING, tri.NORM_FEAT),
                        tri.SCALE)


@LOSSES.register("circleloss", aliases=("circle",))
def build_circle(opts: LossesConfig) -> WeightedLoss:
    c = opts.CIRCLE
    return WeightedLoss("loss_circle", CircleTerm(c.MARGIN, c.GAMMA), c.SCALE)


class LossComputer:
    """``(outputs, targets (N,)) -> {name: scale * term(outputs, targets)}``."""

    def __init__(self, terms: Sequence[WeightedLoss]) -> None:
        if not terms:
            raise ValueError("MODEL.LOSSES.NAME is empty: at least one loss is needed")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"MODEL.LOSSES.NAME lists a loss twice: {names}")
        self.terms = [WeightedLoss(*t) for t in terms]

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {t.name: t.scale * t.term(outputs, targets) for t in self.terms}

    @classmethod
    def from_config(cls, opts: LossesConfig) -> "LossComputer":
        """The losses named in ``MODEL.LOSSES.NAME`` with their weights (``*.SCALE``)."""
        return cls([LOSSES.get(name)(opts) for name in opts.NAME])


def build_loss_fn(cfg) -> LossComputer:
    """Entry point for the run flows: :meth:`LossComputer.from_config` of the root config's
    ``MODEL.LOSSES``."""
    return LossComputer.from_config(cfg.MODEL.LOSSES)
