"""Sample sheets of the camera GANs as trainer hooks: PNG files, and TensorBoard images."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torchvision.utils import save_image

from uda_reid.engine.hooks import HookBase, WriterHook, is_period_end
from uda_reid.utils.atomic import atomic_path

Render = Callable[[], torch.Tensor]  # () -> a (3, H, W) grid in [0, 1]


def save_sample_sheet(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) [0, 1] grid as PNG atomically."""
    with atomic_path(path) as tmp:
        save_image(grid.clamp(0, 1), tmp, format="png")
    return Path(path)


class SampleSheetHook(HookBase):
    """Writes ``render()`` to ``<folder>/<name.format(epoch)>`` (1-based epoch, e.g.
    ``epoch_{:03d}.png``) every ``period`` epochs and after the last."""

    def __init__(self, render: Render, folder: str | Path, period: int,
                 name: str = "epoch_{:03d}.png") -> None:
        self.render, self.folder, self.period, self.name = render, Path(folder), period, name

    def after_epoch(self) -> None:
        trainer = self.trainer
        if is_period_end(trainer.epoch, self.period, trainer.max_epoch):
            save_sample_sheet(self.render(), self.folder / self.name.format(trainer.epoch + 1))


class SampleImageHook(HookBase):
    """Adds ``render()`` as the TensorBoard image ``samples`` to the events of ``board`` (a
    writer hook registered before this one) after every ``period``-th epoch."""

    def __init__(self, render: Render, board: WriterHook, period: int) -> None:
        self.render, self.board, self.period = render, board, period

    def after_epoch(self) -> None:
        epoch = self.trainer.epoch + 1
        if self.period > 0 and epoch % self.period == 0:
            self.board.writer.add_image("samples", self.render(), epoch)
