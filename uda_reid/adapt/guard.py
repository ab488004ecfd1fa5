"""Label guard: what an adaptation method receives carries no target identities.

Unsupervised domain adaptation may use the target images and their camera ids, never their
person ids. :func:`method_inputs` (called by the pipeline, never by a method) builds the two
training sets a method gets:

- :class:`TargetImages`: the target training images in an order shuffled with a fixed seed
  (so memory slots do not follow identities), their cameras, and optionally each image in
  every camera's style; nothing else.
- :class:`SourceImages`: the labelled source training images (identities 0..P-1, cameras);
  none in a run without a source.

Both read their images by position from anonymously named links (``uda_reid.data.anonymous``),
so no file path, dataset folder or file name reaches a method; the true target identities
(in slot order) go back to the pipeline only, which scores the pseudo-labels a method reports.
A method's trainer hooks run inside a :class:`GuardedHook`, seeing a :class:`TrainerView`
instead of the trainer (whose other hooks hold the evaluator and the monitoring).

A method is Python code in the same process: the guard makes its inputs label-free, it is no
sandbox against code that searches the disk or the interpreter on its own (e.g. reads the run's
``config.yaml``, or orders the linked files by the inode numbers they share with the originals).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from uda_reid.adapt.camstyle_data import CamStyleFolder
from uda_reid.data.anonymous import IndexedImages, link_anonymously
from uda_reid.data.datasets.base import relabel
from uda_reid.engine.events import EventStorage
from uda_reid.engine.hooks import HookBase


class SourceImages:
    """The labelled source training set: ``pids`` (N,) in 0..P-1, ``camids`` (N,)."""

    def __init__(self, name: str, files: Sequence[str], pids: Sequence[int],
                 camids: Sequence[int]) -> None:
        self.name = name
        self._files = tuple(files)
        self.pids = tuple(int(p) for p in pids)
        self.camids = tuple(int(c) for c in camids)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def num_classes(self) -> int:
        return len(set(self.pids))

    def dataset(self, transform) -> IndexedImages:
        """Items ``{"images", "pids", "camids", "indexes"}`` by position."""
        return IndexedImages(self._files, self.camids, self.pids, transform)

    def __repr__(self) -> str:
        return f"SourceImages({self.name}: {len(self)} images, {self.num_classes} identities)"


class TargetImages:
    """The target training set without identities: ``camids`` (N,) of the images in slot order
    (position ``i`` = memory slot ``i``), ``num_cameras``, and whether camera styles exist."""

    def __init__(self, name: str, files: Sequence[str], camids: Sequence[int], num_cameras: int,
                 styles: Optional[Sequence[Sequence[str]]] = None) -> None:
        self.name = name
        self._files = tuple(files)
        self.camids = tuple(int(c) for c in camids)
        self.num_cameras = int(num_cameras)
        self._styles = styles

    def __len__(self) -> int:
        return len(self._files)

    @property
    def has_camstyle(self) -> bool:
        return self._styles is not None

    def dataset(self, transform, camstyle: bool = False) -> IndexedImages:
        """Items ``{"images", "pids" (-1), "camids", "indexes"}`` by slot; with ``camstyle``
        each draw shows the image in a random camera's style (``camids`` = that camera)."""
        if camstyle and self._styles is None:
            raise ValueError(f"{self.name}: no camera-style images were prepared")
        return IndexedImages(self._files, self.camids, None, transform,
                             self._styles if camstyle else None)

    def __repr__(self) -> str:
        return (f"TargetImages({self.name}: {len(self)} images, {self.num_cameras} cameras, "
                "identities hidden)")


def slot_order(num_images: int, seed: int) -> np.ndarray:
    """(N,) original index of the image in each memory slot: a permutation drawn from ``seed``
    alone (independent of identities and file names)."""
    return np.random.default_rng([seed, num_images]).permutation(num_images)


def _style_files(samples: Sequence[Tuple[str, int, int, int]], num_cameras: int,
                 camstyle: CamStyleFolder, folder: Path, own: Sequence[str]
                 ) -> List[List[str]]:
    """(N, C) anonymous files of each slot's image in each camera's style."""
    sources, names, cells = [], [], []
    for slot, (path, _, camid, _) in enumerate(samples):
        for cam in range(num_cameras):
            if cam != camid:
                sources.append(str(camstyle.image(path, camid, cam)))
                names.append(f"{slot:06d}_to{cam + 1}")
                cells.append((slot, cam))
    grid = [[own[slot]] * num_cameras for slot in range(len(samples))]
    for (slot, cam), linked in zip(cells, link_anonymously(sources, folder, names)):
        grid[slot][cam] = linked
    return grid


def method_inputs(source, target, folder: Path, seed: int,
                  camstyle: Optional[CamStyleFolder] = None
                  ) -> Tuple[Optional[SourceImages], TargetImages, np.ndarray]:
    """The method's views of the ``source`` and ``target`` datasets (``.name``, ``.train``,
    ``.num_cameras``), their images linked under ``folder`` (with the ``camstyle`` folder's
    images of every target image in every other camera; no source view when ``source`` is
    ``None``); and the target identities (N,) in slot order, for the pipeline's monitoring
    only."""
    source_view = None
    if source is not None:
        labelled = relabel(source.train)
        source_files = link_anonymously([s[0] for s in labelled], folder / "source",
                                        [f"{i:06d}" for i in range(len(labelled))])
        source_view = SourceImages(source.name, source_files, [s[1] for s in labelled],
                                   [s[2] for s in labelled])
    for pos, sample in enumerate(target.train):
        if len(sample) != 4:
            raise ValueError(f"sample {pos} is {sample!r}; expected (img_path, pid, camid, index)")
    order = slot_order(len(target.train), seed)
    samples = [target.train[i] for i in order]
    files = link_anonymously([s[0] for s in samples], folder / "target",
                             [f"{slot:06d}" for slot in range(len(samples))])
    styles = None
    if camstyle is not None:
        styles = _style_files(samples, int(target.num_cameras), camstyle,
                              folder / "target_styles", files)
    target_view = TargetImages(target.name, files, [s[2] for s in samples],
                               int(target.num_cameras), styles)
    return source_view, target_view, np.asarray([s[1] for s in samples], dtype=np.int64)


class TrainerView:
    """What a method's hooks see of the trainer: ``model``, ``optimizer``, the loop's position
    (``epoch``, ``iter``, ``max_epoch``, ``iters_per_epoch``), copied in before every call, and
    a ``storage`` of their own for the scalars they put (moved to the trainer's after every
    call) - not the trainer itself, whose other hooks hold the evaluator and the monitoring."""

    def __init__(self, model, optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        self.epoch = self.iter = self.max_epoch = self.iters_per_epoch = 0
        self.storage = EventStorage()


class GuardedHook(HookBase):
    """Runs a method's hook with a :class:`TrainerView` as its ``trainer``."""

    def __init__(self, hook: HookBase) -> None:
        self.hook = hook
        self._view: Optional[TrainerView] = None

    def _run(self, method: str) -> None:
        if self._view is None:
            self._view = TrainerView(self.trainer.model, self.trainer.optimizer)
            self.hook.trainer = self._view  # type: ignore[assignment]
        for name in ("epoch", "iter", "max_epoch", "iters_per_epoch"):
            setattr(self._view, name, getattr(self.trainer, name))
        getattr(self.hook, method)()
        for scalar in self._view.storage.pop_scalars():
            self.trainer.storage.put_scalar(*scalar)

    def before_train(self) -> None:
        self._run("before_train")

    def before_epoch(self) -> None:
        self._run("before_epoch")

    def before_step(self) -> None:
        self._run("before_step")

    def after_step(self) -> None:
        self._run("after_step")

    def after_epoch(self) -> None:
        self._run("after_epoch")

    def after_train(self) -> None:
        self._run("after_train")

    @property
    def state_name(self) -> str:
        return self.hook.state_name

    def state_dict(self) -> Dict[str, Any]:
        return self.hook.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.hook.load_state_dict(state)
