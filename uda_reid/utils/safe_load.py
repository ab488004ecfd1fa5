"""The one way weight and checkpoint files are read: ``torch.load(weights_only=True)``.

A ``.pth`` file is a pickle; unpickling an arbitrary one can run any code it names. Loading with
``weights_only=True`` rebuilds only tensors and plain containers (dict, list, tuple, str, int,
float, bool, None), plus NumPy arrays (data only: older CamStyle checkpoints hold NumPy's random
state); anything else is refused before it runs. Every failure (missing, empty, truncated,
text, or code-carrying file) is a :class:`WeightFileError` naming the file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from uda_reid.utils.errors import UserError

# NumPy array reconstruction (an ndarray from its shape, dtype and raw bytes) for the boolean and
# numeric dtypes; object arrays stay refused.
NUMPY_ARRAY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
                       *sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"},
                               key=lambda t: t.__name__)]


class WeightFileError(UserError, ValueError):
    """A weight or checkpoint file that cannot be read (or may not be read safely)."""


def load_weights_file(path: os.PathLike | str, what: str = "weight file") -> Any:
    """The object saved in ``path`` (on the CPU), loaded without running code from it.

    ``what`` names the setting the path came from in error messages, e.g. ``MODEL.WEIGHTS``.
    Raises :class:`FileNotFoundError` for a missing file and :class:`WeightFileError` for one
    that is not a readable checkpoint or holds objects other than tensors and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path} (weights are read from local "
                                "files only; nothing is downloaded)")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not head:
        raise WeightFileError(f"{what}: {path} is empty, not a checkpoint")
    if head != b"PK" and head[:1] != b"\x80":  # neither torch.save's zip nor a legacy pickle
        raise WeightFileError(f"{what}: {path} is not a PyTorch checkpoint (neither the zip "
                              "archive nor the pickle torch.save writes)")
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse the file is a property of the file
        raise WeightFileError(f"{what}: {path} {_reason(err)}") from err


def _reason(err: Exception) -> str:
    """One line saying why ``torch.load`` failed."""
    text = str(err)
    if "Weights only load failed" in text or "Unsupported global" in text:
        match = re.search(r"Unsupported global: GLOBAL (\S+)|but got (<[^>]+>|\S+)", text)
        culprit = f" (it refers to {match.group(1) or match.group(2)})" if match else ""
        return ("holds objects other than tensors and plain values, and was not loaded because "
                f"unpickling it could run code{culprit}; save only its state dict (tensors, "
                "dicts, lists, numbers, strings)")
    if isinstance(err, EOFError):
        return "ends early (empty or truncated file), not a complete checkpoint"
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return ("is not a readable PyTorch checkpoint (truncated, or not a .pth file): "
            f"{type(err).__name__}{f': {first}' if first else ''}")
