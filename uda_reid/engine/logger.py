"""Logging set-up: the ``uda_reid`` logger writes to stdout and to ``<output>/log.txt``."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

from uda_reid.utils.distributed import is_main_process

FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


class StdoutHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stdout`` as it is when a record is emitted, so a
    replaced stdout (a test runner's capture, a redirect) never leaves it writing to a closed
    stream."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        """The stream is always the current ``sys.stdout``; assignments are ignored."""


def setup_logger(output_dir: Optional[os.PathLike | str] = None, name: str = "uda_reid",
                 level: int = logging.INFO) -> logging.Logger:
    """Configure ``name``'s logger with a stdout handler and, if given, ``output_dir/log.txt``
    (appended to, so a resumed run continues the same log). Calling it again replaces the
    handlers it added before. Under torch.distributed only rank 0 writes the log file; the
    other ranks print warnings and errors only."""
    log = logging.getLogger(name)
    main = is_main_process()
    log.setLevel(level if main else max(level, logging.WARNING))
    log.propagate = False
    for handler in [h for h in log.handlers if getattr(h, "_uda_reid", False)]:
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT, datefmt="%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [StdoutHandler()]
    if output_dir is not None and main:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "log.txt", mode="a"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._uda_reid = True
        log.addHandler(handler)
    return log
