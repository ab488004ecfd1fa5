"""Optimiser construction: parameter groups with their own LR and weight decay (FastReID rules).

Per parameter: ``lr = base_lr * (backbone_lr_factor if it lives in the backbone else
heads_lr_factor)``; weight decay is ``weight_decay``, ``weight_decay_norm`` for parameters of
normalisation layers; a bias additionally gets ``lr *= bias_lr_factor`` and
``weight_decay_bias`` (a norm layer's bias included). Parameters that do not require gradients
when the optimiser is built are left out (permanently frozen parts).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from uda_reid.config.sections.solver import SolverConfig

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
              nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)
OPTIMIZERS = ("sgd", "adam", "adamw")


def build_param_groups(model: nn.Module, base_lr: float, weight_decay: float,
                       weight_decay_norm: float, weight_decay_bias: float,
                       bias_lr_factor: float = SolverConfig.BIAS_LR_FACTOR,
                       backbone_lr_factor: float = SolverConfig.BACKBONE_LR_FACTOR,
                       heads_lr_factor: float = SolverConfig.HEADS_LR_FACTOR,
                       backbone_prefix: str = "backbone") -> List[Dict]:
    """Parameter groups, one per distinct (lr, weight_decay) pair, in first-seen order.

    Each group carries ``params``, ``lr``, ``weight_decay`` and ``names`` (parameter names).
    """
    groups: Dict[Tuple[float, float], Dict] = {}
    seen = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            in_backbone = full_name == backbone_prefix or full_name.startswith(backbone_prefix + ".")
            lr = base_lr * (backbone_lr_factor if in_backbone else heads_lr_factor)
            wd = weight_decay_norm if is_norm else weight_decay
            if param_name == "bias":
                lr *= bias_lr_factor
                wd = weight_decay_bias
            group = groups.setdefault((lr, wd), {"params": [], "names": [], "lr": lr,
                                                 "weight_decay": wd})
            group["params"].append(param)
            group["names"].append(full_name)
    if not groups:
        raise ValueError("The model has no trainable parameters")
    return list(groups.values())


def build_optimizer(model: nn.Module, name: str, base_lr: float, weight_decay: float,
                    weight_decay_norm: float, weight_decay_bias: float,
                    bias_lr_factor: float = SolverConfig.BIAS_LR_FACTOR,
                    backbone_lr_factor: float = SolverConfig.BACKBONE_LR_FACTOR,
                    heads_lr_factor: float = SolverConfig.HEADS_LR_FACTOR,
                    momentum: float = SolverConfig.MOMENTUM,
                    nesterov: bool = SolverConfig.NESTEROV) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW (``momentum`` is beta1) over
    :func:`build_param_groups`."""
    groups = build_param_groups(model, base_lr, weight_decay, weight_decay_norm,
                                weight_decay_bias, bias_lr_factor, backbone_lr_factor,
                                heads_lr_factor)
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(groups, lr=base_lr, momentum=momentum, nesterov=nesterov)
    if key == "adam":
        return torch.optim.Adam(groups, lr=base_lr, betas=(momentum, 0.999))
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=base_lr, betas=(momentum, 0.999))
    raise ValueError(f"SOLVER.OPT: unknown optimiser '{name}' (use SGD, Adam or AdamW)")


def build_optimizer_from_solver(opts: SolverConfig, model: nn.Module) -> torch.optim.Optimizer:
    """:func:`build_optimizer` with the options of the ``SOLVER`` section."""
    return build_optimizer(model, opts.OPT, opts.BASE_LR, opts.WEIGHT_DECAY,
                           opts.WEIGHT_DECAY_NORM, opts.WEIGHT_DECAY_BIAS, opts.BIAS_LR_FACTOR,
                           opts.BACKBONE_LR_FACTOR, opts.HEADS_LR_FACTOR, opts.MOMENTUM,
                           opts.NESTEROV)


def build_optimizer_from_config(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Entry point for the run flows: :func:`build_optimizer_from_solver` of ``cfg.SOLVER``."""
    return build_optimizer_from_solver(cfg.SOLVER, model)
