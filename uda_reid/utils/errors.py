"""The error types a user can cause (bad config, files, names), as opposed to bugs.

Command-line tools (:func:`uda_reid.engine.run_tool.run_tool`) report a :class:`UserError`
in one line with exit code 2; any other exception keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Base of the errors a user causes through the config, the command line or input files."""


class UnknownNameError(UserError, KeyError):
    """A name from the config (a registry key, architecture, domain, module) that is not known.

    Stays a ``KeyError`` so lookups that catch ``KeyError`` keep working."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()
