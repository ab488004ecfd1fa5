"""Running a table cell through the same code path as ``tools/adapt.py``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from uda_reid.reproduce.table import Cell, Runner

TABLES = {
    "uda": {"pairs": ["market:duke", "duke:market", "market:msmt", "duke:msmt"],
            "methods": ["direct", "ecn", "cluster", "mlt", "mmt"]},
    "synthetic": {"pairs": ["synth-market:synth-duke", "synth-duke:synth-market"],
                  "methods": ["direct", "ecn", "cluster", "mlt", "mmt"]},
}


def adapt_runner(overrides: Sequence[str], source_cache: Path) -> Runner:
    """A runner building each cell's config like ``tools/adapt.py`` (the method's recipe for
    the pair, then ``overrides``), with the cell's seed and a shared source-model cache, so
    cells that need the same source model train it once."""
    from uda_reid.adapt.pipeline import build_adapt_config, run_adaptation

    def run(cell: Cell, folder: Path) -> dict:
        cfg = build_adapt_config(cell.source, cell.target, cell.method, None, str(folder),
                                 [*overrides, "SEED", str(cell.seed),
                                  "ADAPT.SOURCE_CACHE", str(source_cache)])
        started = (folder / "last.pth").is_file()  # else a failed try left nothing to keep
        return run_adaptation(cfg, resume=started, overwrite=not started)

    return run
