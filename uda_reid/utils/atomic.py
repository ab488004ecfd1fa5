"""Atomic file writes: write to a temporary file in the same folder, then rename.

Files get the permissions of any newly created file (``0666`` minus the umask, e.g. ``0644``),
not the private ``0600`` of :func:`tempfile.mkstemp`.
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def _create_temporary(path: Path) -> Path:
    """Create an empty ``.<name>.<random>.tmp`` beside ``path`` with the umask's permissions."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception (or a kill) the destination is untouched and the temporary file removed
    (a kill may leave a ``.tmp`` file, never a half-written destination).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: os.PathLike | str, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_save(path: os.PathLike | str, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` (e.g. ``lambda p: torch.save(obj, p)``) then rename."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)
