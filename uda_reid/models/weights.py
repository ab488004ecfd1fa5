"""Loading local weight files with a report of missing / unexpected / mismatched keys."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping

import torch
from torch import nn

from uda_reid.utils.safe_load import WeightFileError, load_weights_file

logger = logging.getLogger(__name__)

NESTED_KEYS = ("state_dict", "model", "model_state", "net")


@dataclass
class LoadReport:
    """What a non-strict load did: keys loaded, missing, unexpected and shape-mismatched."""

    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch (skipped)", list(self.mismatched.items()))):
            if keys:
                lines.append(f"{title} ({len(keys)}): " + ", ".join(map(str, keys[:20]))
                             + (" ..." if len(keys) > 20 else ""))
        return "; ".join(lines)


def read_state_dict(path: str | os.PathLike, what: str = "weight file"
                    ) -> Dict[str, torch.Tensor]:
    """A flat state dict from a local checkpoint (``.safetensors``, or a torch file: plain,
    ``{'state_dict'|'model': ...}``), with or without DataParallel's ``module.`` prefix, read
    safely (:func:`load_weights_file`; ``what`` names the setting in errors). Nothing is
    downloaded."""
    if str(path).endswith(".safetensors"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: file not found: {path} (weights are read from "
                                    "local files only; nothing is downloaded)")
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        obj = load_weights_file(path, what)
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = next((obj[k] for k in NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)),
                      None)
        if nested is None:
            raise WeightFileError(f"{what}: {path}: no state dict found (looked under "
                                  f"{NESTED_KEYS})")
        obj = nested
    if not isinstance(obj, Mapping):
        raise WeightFileError(f"{what}: {path}: expected a state dict, got {type(obj).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()
            if isinstance(v, torch.Tensor)}


def load_state_dict_report(module: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load the tensors of ``state`` whose names and shapes match ``module``; report the rest."""
    own = module.state_dict()
    report = LoadReport()
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched[key] = f"{tuple(value.shape)} vs {tuple(own[key].shape)}"
        else:
            usable[key] = value
            report.loaded.append(key)
    report.missing = [k for k in own if k not in usable]
    module.load_state_dict(usable, strict=False)
    return report


def load_pretrained(module: nn.Module, path: str | os.PathLike,
                    what: str = "weight file") -> LoadReport:
    """Load a local weight file into ``module`` non-strictly and log the key report (``what``
    names the setting ``path`` came from in errors)."""
    report = load_state_dict_report(module, read_state_dict(path, what))
    logger.info("Loaded %s into %s: %s", path, type(module).__name__, report)
    return report
