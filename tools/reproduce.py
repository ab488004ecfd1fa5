#!/usr/bin/env python
"""Reproduce a cross-domain table: every missing cell, then table.md / table.csv / table.png.

    python tools/reproduce.py --table uda [--pairs market:duke,duke:market] \
        [--methods direct,ecn,cluster,mlt] [--seeds 3] [--output-dir D] [--dry-run] [KEY VALUE ...]

``--table synthetic`` (the default when no real dataset is under DATASETS.ROOT) runs the
synthetic pairs: the real table's four (market/duke -> duke/market/msmt). ``--table
ecn_ablation`` (Duke <-> Market) and ``synthetic_ecn_ablation`` run ECN's ablation cells
(``ecn_source``, ``ecn_e``, ``ecn_ec``, ``ecn_en``, ``ecn_ecn``: the ``ecn`` recipe with its
target terms switched, see ``uda_reid/reproduce/runner.py``). Finished cells are skipped, so a
killed run continues where it stopped; a failing cell is recorded (failed.json) and the rest
still runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from uda_reid.config import ConfigError, load_config
from uda_reid.data.datasets import DATASETS
from uda_reid.engine.run_tool import run_tool
from uda_reid.reproduce.references import load_references
from uda_reid.reproduce.runner import TABLES, adapt_runner
from uda_reid.reproduce.table import (build_rows, cell_state, estimate_seconds, plan_cells,
                                      run_cells, write_outputs)

def real_dataset_dirs() -> List[str]:
    """The folders (under ``DATASETS.ROOT``) of the ``uda`` table's datasets, as their
    registered classes name them (``dataset_dir``)."""
    names = {name for pair in TABLES["uda"]["pairs"] for name in pair.split(":")}
    return sorted({DATASETS.get(name).dataset_dir for name in names})


def default_table(overrides: List[str]) -> str:
    """``uda`` when one of its datasets is under ``DATASETS.ROOT``, else ``synthetic``."""
    root = Path(load_config(None, overrides).DATASETS.ROOT)
    return "uda" if any((root / d).is_dir() for d in real_dataset_dirs()) else "synthetic"


def parse_pairs(text: str) -> list:
    pairs = []
    for item in text.split(","):
        source, sep, target = item.partition(":")
        if not sep:
            raise ConfigError(f"--pairs: '{item}' is not SOURCE:TARGET")
        pairs.append((DATASETS.canonical(source), DATASETS.canonical(target)))
    return pairs


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=sorted(TABLES), default=None)
    parser.add_argument("--pairs", default=None, help="SOURCE:TARGET,... (default: the table's)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: the table's)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; 1 for "
                                                                "the synthetic table)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--dry-run", action="store_true", help="list cells, state and cost")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE")
    return parser.parse_intermixed_args(argv)


def reproduce(args: argparse.Namespace) -> int:
    table = args.table or default_table(args.opts)
    spec = TABLES[table]
    pairs = parse_pairs(args.pairs or ",".join(spec["pairs"]))
    methods = (args.methods or ",".join(spec["methods"])).split(",")
    seeds = args.seeds or (1 if table == "synthetic" else 3)
    root = Path(args.output_dir or f"output/reproduce/{table}")
    cells = plan_cells(pairs, methods, seeds)
    references = load_references()
    if args.dry_run:
        costs = estimate_seconds(cells, root, default=600.0)
        todo = 0.0
        for cell in cells:
            state = cell_state(cell, root)
            todo += costs[cell] if state != "done" else 0.0
            print(f"{state:>6}  {cell.source} -> {cell.target}  {cell.method:<8} seed {cell.seed}"
                  f"  ~{costs[cell] / 60:.1f} min")
        print(f"{sum(cell_state(c, root) == 'done' for c in cells)}/{len(cells)} cells done; "
              f"estimated cost of the rest: {todo / 60:.1f} min (from finished cells' wall "
              f"time where there are any, else 10 min a cell)")
        return 0
    states = run_cells(cells, root, adapt_runner(args.opts, root / "source_models"))
    paths = write_outputs(build_rows(cells, root, references), references, root)
    print(paths["md"].read_text())
    failed = [c for c, s in states.items() if s == "failed"]
    print(f"written: {', '.join(str(p) for p in paths.values())}; "
          f"{len(failed)} failed cell(s)" + (": see failed.json in their folders" if failed else ""))
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    return run_tool(lambda: reproduce(args))


if __name__ == "__main__":
    sys.exit(main())
