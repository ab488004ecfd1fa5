"""Benchmarks: ``python tools/benchmark.py <name> [options]`` (``--help`` lists the names)."""
from __future__ import annotations

import argparse
import sys

from uda_reid.benchmarks import load_all
from uda_reid.engine.run_tool import run_tool


def main(argv: list[str] | None = None) -> int:
    registry = load_all()
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    for name, bench in registry.items():
        bench.add_arguments(sub.add_parser(name, help=(bench.__doc__ or "").strip().split("\n")[0]))
    args = parser.parse_args(argv)
    return run_tool(lambda: int(registry.get(args.name).run(args) or 0))


if __name__ == "__main__":
    sys.exit(main())
