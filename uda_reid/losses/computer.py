"""The training objective: named, weighted losses over the model's training outputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Union

import torch

from uda_reid.losses.functional import circle_loss, cross_entropy_smooth, triplet_loss
from uda_reid.losses.registry import LOSSES

Outputs = Dict[str, Union[torch.Tensor, List[torch.Tensor]]]
LossTerm = Callable[[Outputs, torch.Tensor], torch.Tensor]


def over_branches(value: Union[torch.Tensor, List[torch.Tensor]],
                  fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` of a tensor, or ``0.5 fn(global) + 0.5 mean(fn(local_i))`` for a list (JPM)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if len(value) == 1:
        return fn(value[0])
    return 0.5 * fn(value[0]) + 0.5 * torch.stack([fn(v) for v in value[1:]]).mean()


@dataclass
class CrossEntropyTerm:
    """Label-smoothed cross-entropy on ``logits``."""

    epsilon: float = 0.1

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(outputs["logits"],
                             lambda x: cross_entropy_smooth(x, targets, self.epsilon))


@dataclass
class TripletTerm:
    """Triplet loss on the pre-BNNeck ``features``."""

    margin: float = 0.3
    hard_mining: bool = True
    cosine: bool = False

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(outputs["features"], lambda x: triplet_loss(
            x, targets, self.margin, self.hard_mining, self.cosine))


@dataclass
class CircleTerm:
    """Pairwise circle loss on the pre-BNNeck ``features``."""

    margin: float = 0.25
    gamma: float = 128.0

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return over_branches(outputs["features"],
                             lambda x: circle_loss(x, targets, self.margin, self.gamma))


@LOSSES.register("crossentropyloss", aliases=("ce", "cross_entropy"))
def build_ce(cfg) -> tuple:
    return "loss_cls", CrossEntropyTerm(cfg.MODEL.LOSSES.CE.EPSILON), cfg.MODEL.LOSSES.CE.SCALE


@LOSSES.register("tripletloss", aliases=("triplet",))
def build_triplet(cfg) -> tuple:
    tri = cfg.MODEL.LOSSES.TRI
    return "loss_triplet", TripletTerm(tri.MARGIN, tri.HARD_MINING, tri.NORM_FEAT), tri.SCALE


@LOSSES.register("circleloss", aliases=("circle",))
def build_circle(cfg) -> tuple:
    c = cfg.MODEL.LOSSES.CIRCLE
    return "loss_circle", CircleTerm(c.MARGIN, c.GAMMA), c.SCALE


class LossComputer:
    """``(outputs, targets) -> {name: scale * term(outputs, targets)}``."""

    def __init__(self, terms: Sequence[tuple]) -> None:
        if not terms:
            raise ValueError("MODEL.LOSSES.NAME is empty: at least one loss is needed")
        self.terms = list(terms)

    def __call__(self, outputs: Outputs, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: scale * term(outputs, targets) for name, term, scale in self.terms}


def build_loss_fn(cfg) -> LossComputer:
    """The losses named in ``MODEL.LOSSES.NAME`` with their weights (``*.SCALE``)."""
    return LossComputer([LOSSES.get(name)(cfg) for name in cfg.MODEL.LOSSES.NAME])
