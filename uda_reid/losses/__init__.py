"""Losses: functional forms, registered config builders and the loss computer."""
from uda_reid.losses.computer import LossComputer, WeightedLoss, build_loss_fn
from uda_reid.losses.functional import (circle_loss, cross_entropy_smooth, pairwise_distance,
                                        triplet_loss)

__all__ = ["LossComputer", "WeightedLoss", "build_loss_fn", "circle_loss",
           "cross_entropy_smooth", "pairwise_distance", "triplet_loss"]
