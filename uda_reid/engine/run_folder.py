"""Output folders: a run never writes into a folder that holds another run unless told to.

A folder *holds a run* when one of the run's marker files is there (``config.yaml`` is written
when a run starts, ``last.pth`` after its first epoch, ``results.json`` when it finished). A new
run into such a folder is refused; ``--resume`` continues the run there and ``--overwrite``
first deletes the run's own outputs (nothing else in the folder).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence
from uda_reid.utils.errors import UserError

RUN_MARKERS = ("results.json", "last.pth", "config.yaml")
# What a train / adapt run writes into its folder (TensorBoard files by pattern).
RUN_OUTPUTS = ("config.yaml", "log.txt", "last.pth", "best.pth", "results.json",
               "events.out.tfevents.*")


class OutputFolderError(UserError, FileExistsError):
    """The output folder holds another run and neither resuming nor overwriting was asked."""


def check_output_folder(folder: os.PathLike | str, resume: bool = False, overwrite: bool = False,
                        markers: Sequence[str] = RUN_MARKERS, what: str = "a run",
                        resumable: bool = True) -> None:
    """Refuse (:class:`OutputFolderError`) to write ``what`` into ``folder`` when one of
    ``markers`` is there, unless ``resume`` or ``overwrite``; writes nothing. The message
    suggests ``--resume`` only when the tool is ``resumable``."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: resume continues the run "
                         "in the output folder, overwrite replaces it")
    folder = Path(folder)
    found = [name for name in markers if (folder / name).exists()]
    if found and not (resume or overwrite):
        raise OutputFolderError(
            f"{folder} already holds {what} ({', '.join(found)}); pass "
            + ("--resume to continue it, " if resumable else "")
            + "--overwrite to replace it, or choose another output folder (--output-dir / "
            "OUTPUT_DIR)")


def clear_run_outputs(folder: os.PathLike | str, outputs: Sequence[str] = RUN_OUTPUTS
                      ) -> List[Path]:
    """Delete the files of ``folder`` matching ``outputs`` (names or glob patterns relative to
    it, e.g. ``tensorboard/events.*``); other files stay. Returns the deleted paths."""
    folder = Path(folder)
    removed = sorted({path for pattern in outputs for path in folder.glob(pattern)
                      if path.is_file()})
    for path in removed:
        path.unlink()
    return removed
