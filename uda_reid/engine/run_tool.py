"""Running a command-line tool: user errors in one line (exit code 2), bugs with their
traceback."""
from __future__ import annotations

import sys
import traceback
from typing import Callable

from uda_reid.engine.logger import log_to_files, setup_logger
from uda_reid.utils.errors import UserError

# What a user can cause with a command line: the project's own user errors (bad config key or
# value, unknown name, dataset layout, weight file, checkpoint mismatch, output folder), a
# missing or unreadable file (OSError) and an explicit ValueError for a bad config value. A
# plain KeyError, AttributeError, TypeError or IndexError is a bug and keeps its traceback.
USER_ERRORS = (UserError, OSError, ValueError)


def describe_user_error(err: BaseException) -> str:
    """The message of a user error; of an error re-raised from a DataLoader worker only its
    last line (the original error)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def run_tool(action: Callable[[], object]) -> int:
    """Run a command-line tool's ``action``: returns its exit code (``action``'s int result,
    else 0). A user error (:data:`USER_ERRORS`) is reported as ``error: ...`` on stderr and in
    the run's ``log.txt``, exit code 2; any other exception is a bug: its traceback goes to
    ``log.txt`` too and it propagates. Log records wait in memory until a run claims its
    output folder (:func:`uda_reid.engine.logger.setup_logger`)."""
    setup_logger()
    try:
        result = action()
    except USER_ERRORS as err:
        message = f"error: {describe_user_error(err)}"
        log_to_files(message)
        print(message, file=sys.stderr)
        return 2
    except Exception:
        log_to_files(f"error: unexpected failure (a bug)\n{traceback.format_exc()}")
        raise
    return result if isinstance(result, int) else 0
