"""Logging set-up: the ``uda_reid`` logger writes to stdout and to ``<output>/log.txt``.

Until a run has claimed its output folder, records are kept in memory (nothing is written into
a folder before its checks pass); the folder's ``log.txt`` then starts with them.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import deque
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


class PendingRecords(logging.Handler):
    """Holds the last ``capacity`` records logged before the output folder is known."""

    def __init__(self, capacity: int = 10000) -> None:
        super().__init__()
        self.records: deque[logging.LogRecord] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def setup_logger(output_dir: Optional[os.PathLike | str] = None, name: str = "uda_reid",
                 level: int = logging.INFO) -> logging.Logger:
    """Configure ``name``'s logger with a stdout handler and ``output_dir/log.txt`` (appended
    to, so a resumed run continues the same log), or without ``output_dir`` a memory of the
    records that the next call with a folder writes first. Calling it again replaces the
    handlers it added before. Under torch.distributed only rank 0 writes the log file; the
    other ranks print warnings and errors only."""
    log = logging.getLogger(name)
    main = is_main_process()
    log.setLevel(level if main else max(level, logging.WARNING))
    log.propagate = False
    pending = []
    for handler in [h for h in log.handlers if getattr(h, "_uda_reid", False)]:
        if isinstance(handler, PendingRecords):
            pending = list(handler.records)
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT, datefmt="%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [StdoutHandler()]
    if output_dir is None:
        handlers.append(PendingRecords())
        handlers[-1].records.extend(pending)
    elif main:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        log_file = logging.FileHandler(Path(output_dir) / "log.txt", mode="a")
        log_file.setFormatter(formatter)
        for record in pending:
            log_file.handle(record)
        handlers.append(log_file)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._uda_reid = True
        log.addHandler(handler)
    return log


def log_to_files(message: str, name: str = "uda_reid", level: int = logging.ERROR) -> None:
    """Write ``message`` to the ``log.txt`` files ``name``'s logger writes to (not to stdout:
    the caller reports it on stderr)."""
    log = logging.getLogger(name)
    record = log.makeRecord(name, level, "(tool)", 0, message, None, None)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
