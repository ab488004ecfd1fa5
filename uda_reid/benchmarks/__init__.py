"""Benchmarks run by ``tools/benchmark.py <name>``.

Each module in this package registers one subcommand with ``BENCHMARKS.register(name)`` on a
class with ``add_arguments(parser)`` and ``run(args) -> int`` static methods. Modules are found
automatically, so a new benchmark is one new file.
"""
from __future__ import annotations

import importlib
import pkgutil

from uda_reid.utils.registry import Registry

BENCHMARKS = Registry("benchmark")


def load_all() -> Registry:
    """Import every benchmark module of this package and return the filled registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return BENCHMARKS
