"""Permanently frozen sub-modules: no gradients, and their BatchNorms kept in eval mode."""
from __future__ import annotations

from typing import List, Sequence

from torch import nn

from uda_reid.engine.hooks import HookBase
from uda_reid.utils.errors import UnknownNameError


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_modules(model: nn.Module, prefixes: Sequence[str]) -> List[str]:
    """Turn off ``requires_grad`` of every parameter under the module-name ``prefixes``.

    Returns the frozen parameter names; a prefix that names no module is an error.
    """
    names = {name for name, _ in model.named_modules()}
    unknown = [p for p in prefixes if p not in names]
    if unknown:
        raise UnknownNameError(f"No module named {unknown} in the model (ADAPT.ECN.FROZEN); "
                               f"top-level modules: {[n for n, _ in model.named_children()]}")
    frozen = []
    for name, param in model.named_parameters():
        if _under(name, prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def set_frozen_norms_eval(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Put the BatchNorms under ``prefixes`` in eval mode (call after ``model.train()``).

    Returns how many were switched.
    """
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and _under(name, prefixes):
            module.eval()
            count += 1
    return count


class FrozenNormsHook(HookBase):
    """Keeps the BatchNorms under ``prefixes`` in eval mode before every step (evaluation
    between epochs switches the model back to train mode)."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = tuple(prefixes)

    def before_step(self) -> None:
        set_frozen_norms_eval(self.trainer.model, self.prefixes)
