"""Loading a trained model: the config's architecture with a checkpoint's weights."""
from __future__ import annotations

import copy
import os

import torch
from torch import nn

from uda_reid.config import Config
from uda_reid.engine.checkpoint import load_model_weights, read_checkpoint_meta
from uda_reid.models import build_model


def without_initial_weights(cfg: Config) -> Config:
    """A copy of ``cfg`` that builds a model without loading ``MODEL.WEIGHTS`` or backbone
    pre-training (a full checkpoint is loaded into it next)."""
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.PRETRAIN = False
    return cfg


def load_trained_model(cfg: Config, weights: os.PathLike | str,
                       device: torch.device | str = "cpu") -> nn.Module:
    """The model of ``cfg`` with the checkpoint ``weights`` loaded strictly (every tensor must
    match), on ``device``; the number of classes comes from the checkpoint's meta, else
    ``MODEL.HEADS.NUM_CLASSES``. Training-only modules an adaptation method added (listed in
    the meta as ``training_modules``) are not loaded."""
    meta = read_checkpoint_meta(weights)
    num_classes = meta.get("num_classes") or cfg.MODEL.HEADS.NUM_CLASSES
    if not num_classes:
        raise ValueError(f"MODEL.WEIGHTS {weights} records no number of classes; "
                         "set MODEL.HEADS.NUM_CLASSES")
    model = build_model(without_initial_weights(cfg), num_classes).to(device)
    load_model_weights(model, weights, skip_modules=meta.get("training_modules", ()))
    return model
