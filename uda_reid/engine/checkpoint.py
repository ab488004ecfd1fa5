"""Checkpoints: atomic ``torch.save`` into the output folder, tagged with the run's identity.

The identity is a flat mapping (e.g. the resolved config without its output folder). Resuming
from a checkpoint whose identity differs is an error naming the keys that changed.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from uda_reid.models.weights import LoadReport, load_state_dict_report, read_state_dict
from uda_reid.utils.atomic import atomic_save
from uda_reid.utils.safe_load import WeightFileError, load_weights_file
from uda_reid.utils.distributed import on_main_process
from uda_reid.utils.errors import UserError

logger = logging.getLogger(__name__)


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint was written by a run with a different identity (config)."""


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"A": {"B": 1}}`` -> ``{"A.B": 1}``."""
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def identity_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
    """Keys whose values differ, with both values, e.g. ``SOLVER.BASE_LR: 0.1 -> 0.2``."""
    a, b = flatten(saved), flatten(current)
    missing = object()
    return [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}".replace(repr(missing), "<absent>")
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


class Checkpointer:
    """Saves and loads named checkpoints (``last.pth``, ``best.pth``) in ``directory``.

    ``read_identity`` turns a saved identity into the current form before the comparison
    (e.g. deprecated config key names into the new ones; default: as saved)."""

    def __init__(self, directory: os.PathLike | str, identity: Mapping[str, Any],
                 meta: Optional[Mapping[str, Any]] = None,
                 read_identity: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict
                 ) -> None:
        self.directory = Path(directory)
        self.identity = dict(identity)
        self.meta = dict(meta or {})
        self.read_identity = read_identity

    def path(self, name: str) -> Path:
        return self.directory / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def save(self, name: str, state: Mapping[str, Any]) -> Path:
        """Write ``state`` plus the identity and ``meta`` (e.g. ``num_classes``, read by the
        test tool) atomically to ``directory/name`` (under torch.distributed: rank 0 writes,
        every rank returns once the file is there)."""
        payload = dict(state, identity=self.identity, meta=self.meta)
        path = self.path(name)
        on_main_process(lambda: atomic_save(path, lambda tmp: torch.save(payload, tmp)))
        return path

    def load(self, name: str) -> Dict[str, Any]:
        """Read ``directory/name`` and check that it belongs to this run's identity."""
        path = self.path(name)
        return self.check(load_weights_file(path, "checkpoint"), path)

    def check(self, state: Any, path: os.PathLike | str) -> Dict[str, Any]:
        """``state`` (read from ``path``) if it is a checkpoint of this run's identity."""
        if not isinstance(state, Mapping):
            raise WeightFileError(f"checkpoint: {path} holds a {type(state).__name__}, not a "
                                  "checkpoint's dict")
        diff = identity_diff(self.read_identity(state.get("identity", {})), self.identity)
        if diff:
            raise CheckpointMismatchError(
                f"Checkpoint {path} was written by a run with a different config; "
                f"differences: {'; '.join(diff[:10])}" + (" ..." if len(diff) > 10 else ""))
        return state


def read_checkpoint_meta(path: os.PathLike | str) -> Dict[str, Any]:
    """The ``meta`` dict a checkpoint of ours carries (empty for a bare state dict)."""
    state = load_weights_file(path, "MODEL.WEIGHTS")
    meta = state.get("meta", {}) if isinstance(state, Mapping) else {}
    return dict(meta) if isinstance(meta, Mapping) else {}


def load_model_weights(model: nn.Module, path: os.PathLike | str, strict: bool = True,
                       skip_modules: Sequence[str] = ()) -> LoadReport:
    """Load weights from our checkpoint (``{"model": state_dict, ...}``) or a bare state dict.

    With ``strict``, any missing, unexpected or shape-mismatched key is an error naming the
    file and the keys (testing a partly random model must not pass silently). Tensors of the
    sub-modules named in ``skip_modules`` (e.g. training-only classifiers) are left out.
    """
    path = Path(path)
    prefixes = tuple(f"{name}." for name in skip_modules)
    state = {k: v for k, v in read_state_dict(path, "MODEL.WEIGHTS").items()
             if not k.startswith(prefixes)}
    report = load_state_dict_report(model, state)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(f"MODEL.WEIGHTS: {path} does not match the model: {report}")
    logger.info("Loaded %s: %s", path, report)
    return report
