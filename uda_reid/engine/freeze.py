"""Frozen sub-modules, named by the config: no gradients, BatchNorm statistics kept.

One name resolution and one set of switches serve both uses: :class:`FreezeHook` freezes
``SOLVER.FREEZE_LAYERS`` for the first iterations of a run, :func:`freeze_modules` with
:class:`FrozenNormsHook` freezes a method's layers (``ADAPT.ECN.FROZEN``) for the whole run.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from uda_reid.engine.hooks import HookBase
from uda_reid.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)


class UnknownModuleError(UnknownNameError, ValueError):
    """A module name from the config that the model does not have."""


def find_modules(model: nn.Module, names: Sequence[str], key: str) -> Dict[str, nn.Module]:
    """``{name: model.get_submodule(name)}`` for ``names`` (dotted module paths); a name the
    model lacks is an :class:`UnknownModuleError` naming the config ``key`` and the model's
    top-level modules."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        top = ", ".join(sorted(n for n, _ in model.named_children()))
        raise UnknownModuleError(f"{key}: the model has no module "
                                 f"{', '.join(repr(n) for n in unknown)} "
                                 f"(top-level modules: {top})")
    return {name: modules[name] for name in names}


def frozen_parameters(model: nn.Module, names: Sequence[str],
                      key: str) -> List[Tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs under the modules ``names``, each parameter once."""
    found: Dict[int, Tuple[str, nn.Parameter]] = {}
    for prefix, module in find_modules(model, names, key).items():
        for name, param in module.named_parameters(prefix=prefix):
            found.setdefault(id(param), (name, param))
    return list(found.values())


def freeze_modules(model: nn.Module, names: Sequence[str],
                   key: str = "ADAPT.ECN.FROZEN") -> List[str]:
    """Turn off ``requires_grad`` of every parameter under the modules ``names`` for good.

    Returns the frozen parameter names.
    """
    frozen = frozen_parameters(model, names, key)
    for _, param in frozen:
        param.requires_grad_(False)
    return [name for name, _ in frozen]


def set_frozen_norms_eval(model: nn.Module, names: Sequence[str],
                          key: str = "ADAPT.ECN.FROZEN") -> int:
    """Put the BatchNorms under the modules ``names`` in eval mode (call after
    ``model.train()``). Returns how many were switched."""
    norms = {id(m): m for module in find_modules(model, names, key).values()
             for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for norm in norms.values():
        norm.eval()
    return len(norms)


class FrozenNormsHook(HookBase):
    """Keeps the BatchNorms under the modules ``names`` in eval mode before every step
    (evaluation between epochs switches the model back to train mode)."""

    def __init__(self, names: Sequence[str], key: str = "ADAPT.ECN.FROZEN") -> None:
        self.names = tuple(names)
        self.key = key

    def before_step(self) -> None:
        set_frozen_norms_eval(self.trainer.model, self.names, self.key)


class FreezeHook(HookBase):
    """Freezes the named sub-modules during the first ``freeze_iters`` iterations.

    Frozen means: parameters do not require gradients (so the optimiser leaves them and their
    state untouched) and the modules are in eval mode (BatchNorm statistics do not move).
    Afterwards the previous ``requires_grad`` and train/eval flags are restored.
    """

    def __init__(self, model: nn.Module, layer_names: Sequence[str], freeze_iters: int,
                 key: str = "SOLVER.FREEZE_LAYERS") -> None:
        self.freeze_iters = freeze_iters
        self.params = [param for _, param in frozen_parameters(model, layer_names, key)]
        self.modules: List[nn.Module] = list(find_modules(model, layer_names, key).values())
        self._saved: Optional[Tuple[List[bool], List[Tuple[nn.Module, bool]]]] = None

    @property
    def frozen(self) -> bool:
        return self._saved is not None

    def before_step(self) -> None:
        if self.trainer.iter < self.freeze_iters:
            self._freeze()
        elif self.frozen:
            self._unfreeze()

    def _freeze(self) -> None:
        submodules = [s for m in self.modules for s in m.modules()]
        if self._saved is None:
            self._saved = ([p.requires_grad for p in self.params],
                           [(s, s.training) for s in submodules])
            logger.info("Freezing %d parameters until iteration %d", len(self.params),
                        self.freeze_iters)
        for p in self.params:
            p.requires_grad_(False)
        for s in submodules:
            s.train(False)

    def _unfreeze(self) -> None:
        flags, submodules = self._saved
        for p, flag in zip(self.params, flags):
            p.requires_grad_(flag)
        for s, flag in submodules:
            s.train(flag)
        self._saved = None
        logger.info("Unfroze the frozen layers at iteration %d", self.trainer.iter)
