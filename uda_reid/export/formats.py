"""ONNX (dynamic batch) and TorchScript files of a feature module, and modules that run them.

Files are written beside their destination and renamed into place (no half-written model).
:class:`OnnxRuntimeFeatures` and :func:`load_torchscript` give ``nn.Module`` s, so the
evaluation's own extraction loop (:func:`uda_reid.evaluation.extract.extract_features`) runs
the exported graphs unchanged.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch
from torch import Tensor, nn

from uda_reid.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "images", "features"


def example_images(size: tuple, batch: int = 2, seed: int = 0) -> Tensor:
    """Random images (batch, 3, H, W) to trace with; ``batch`` >= 2 keeps the batch axis from
    being specialised to one."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=generator)


def export_onnx(module: nn.Module, example: Tensor, path: os.PathLike | str) -> Path:
    """``module`` (taking ``images``) as an ONNX file with a dynamic batch axis (named
    ``batch``) on input ``images`` and output ``features``; torch's export-based converter."""
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converter chatter; failures still raise
        torch.onnx.export(module, (example,), str(tmp), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_shapes={INPUT_NAME: {0: batch}},
                          dynamo=True, external_data=False, verbose=False)
    logger.info("ONNX model written to %s", path)
    return Path(path)


def export_torchscript(module: nn.Module, example: Tensor, path: os.PathLike | str) -> Path:
    """``module`` traced on ``example`` and saved as TorchScript (``torch.jit.load``-able)."""
    with torch.no_grad():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    logger.info("TorchScript model written to %s", path)
    return Path(path)


class OnnxRuntimeFeatures(nn.Module):
    """An ONNX feature model run by onnxruntime on the CPU: images (N, 3, H, W) -> (N, D)
    float32 tensor. ``threads``: onnxruntime's intra-op threads (default: torch's count)."""

    def __init__(self, path: os.PathLike | str, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])

    def forward(self, images: Tensor) -> Tensor:
        array = images.detach().cpu().numpy().astype(np.float32, copy=False)
        (features,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(features)


def load_torchscript(path: os.PathLike | str) -> nn.Module:
    """A saved TorchScript model on the CPU."""
    return torch.jit.load(str(path), map_location="cpu")


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written (``write(module, example, path)``) and run (``load(path)``)."""

    filename: str
    write: Callable[[nn.Module, Tensor, Path], Path]
    load: Callable[[Path], nn.Module]


FORMATS: Dict[str, ExportFormat] = {
    "onnx": ExportFormat("model.onnx", export_onnx, OnnxRuntimeFeatures),
    "torchscript": ExportFormat("model.torchscript.pt", export_torchscript, load_torchscript),
}


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ValueError(f"Unknown export format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]
