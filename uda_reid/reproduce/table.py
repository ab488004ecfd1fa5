"""A cross-domain table: one cell per (source, target, method, seed), run through the same
code path as ``tools/adapt.py``, resumable (finished cells are skipped), failure-tolerant
(a failing cell is recorded and the rest runs), aggregated as mean +- std over seeds."""
from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from uda_reid.reproduce.ordering import orderings, orderings_markdown
from uda_reid.reproduce.references import Reference
from uda_reid.utils.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP")
FAILED = "failed.json"


@dataclass(frozen=True)
class Cell:
    source: str
    target: str
    method: str
    seed: int

    def folder(self, root: Path) -> Path:
        return root / f"{self.source}2{self.target}" / self.method / f"seed{self.seed}"


def plan_cells(pairs: Sequence[Tuple[str, str]], methods: Sequence[str], seeds: int
               ) -> List[Cell]:
    return [Cell(s, t, m, seed) for s, t in pairs for m in methods for seed in range(seeds)]


def cell_state(cell: Cell, root: Path) -> str:
    """``done`` (results.json exists), ``failed`` (failed.json) or ``todo``."""
    folder = cell.folder(root)
    if (folder / "results.json").is_file():
        return "done"
    return "failed" if (folder / FAILED).is_file() else "todo"


Runner = Callable[[Cell, Path], Dict]


def run_cells(cells: Sequence[Cell], root: Path, runner: Runner) -> Dict[Cell, str]:
    """Run every cell not done yet (failed cells are retried); returns each cell's state.

    ``runner(cell, folder)`` trains the cell and writes ``folder/results.json``. An exception
    is recorded in ``folder/failed.json`` (message and traceback) and the next cell runs.
    """
    states = {}
    for i, cell in enumerate(cells, 1):
        folder = cell.folder(root)
        if cell_state(cell, root) == "done":
            states[cell] = "done"
            continue
        logger.info("[%d/%d] %s -> %s, %s, seed %d", i, len(cells), cell.source, cell.target,
                    cell.method, cell.seed)
        start = time.perf_counter()
        try:
            runner(cell, folder)
            (folder / FAILED).unlink(missing_ok=True)
            states[cell] = "done"
        except Exception as err:  # a cell's failure must not stop the table
            logger.error("Cell %s failed: %s", cell, err)
            atomic_write_json(folder / FAILED, {
                "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - start})
            states[cell] = "failed"
    return states


def read_cell(cell: Cell, root: Path) -> Optional[Dict]:
    path = cell.folder(root) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def aggregate(results: Sequence[Dict], target: str) -> Dict[str, Tuple[float, float, int]]:
    """{metric: (mean, std, n)} in percent over runs (population std, 0 for one run)."""
    out = {}
    for key in METRICS:
        values = [100.0 * r["metrics"][target][key] for r in results
                  if key in r.get("metrics", {}).get(target, {})]
        if values:
            out[key] = (float(np.mean(values)), float(np.std(values)), len(values))
    return out


@dataclass
class Row:
    source: str
    target: str
    method: str
    ours: Dict[str, Tuple[float, float, int]]
    failed: int
    reference: Optional[Reference]


def build_rows(cells: Sequence[Cell], root: Path, references: Sequence[Reference]) -> List[Row]:
    rows = []
    groups: Dict[Tuple[str, str, str], List[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.source, cell.target, cell.method), []).append(cell)
    for (source, target, method), group in groups.items():
        results = [r for r in (read_cell(c, root) for c in group) if r is not None]
        failed = sum(cell_state(c, root) == "failed" for c in group)
        ref = next((r for r in references if r.ours == method and r.source == source
                    and r.target == target), None)
        rows.append(Row(source, target, method, aggregate(results, target), failed, ref))
    return rows


def _fmt(stat: Optional[Tuple[float, float, int]]) -> str:
    return "-" if stat is None else f"{stat[0]:.1f} ± {stat[1]:.1f}"


def table_markdown(rows: Sequence[Row], references: Sequence[Reference]) -> str:
    """Ours (mean ± std over seeds) beside the paper numbers and the difference in mAP; for
    synthetic pairs, how they order the methods against the published real-data tables."""
    lines = ["| source → target | method | seeds | mAP | rank-1 | rank-5 | rank-10 | mINP "
             "| paper mAP / rank-1 | Δ mAP | paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = max((s[2] for s in r.ours.values()), default=0)
        seeds = f"{n}" + (f" ({r.failed} failed)" if r.failed else "")
        paper, delta, ref = "-", "-", "-"
        if r.reference is not None:
            pm = r.reference.metrics
            paper = " / ".join(f"{pm[k]:.1f}" if k in pm else "-" for k in ("mAP", "rank1"))
            if "mAP" in r.ours and "mAP" in pm:
                delta = f"{r.ours['mAP'][0] - pm['mAP']:+.1f}"
            ref = f"{r.reference.method}: {r.reference.ref}"
        cells = [_fmt(r.ours.get(k)) for k in METRICS]
        lines.append(f"| {r.source} → {r.target} | {r.method} | {seeds} | " + " | ".join(cells)
                     + f" | {paper} | {delta} | {ref} |")
    pairs = {(r.source, r.target) for r in rows}
    context = [ref for ref in references if ref.ours is None and (ref.source, ref.target) in pairs]
    if context:
        lines += ["", "Other published methods on these pairs (for context):", "",
                  "| source → target | method | mAP | rank-1 | source |", "|---|---|---|---|---|"]
        lines += [f"| {c.source} → {c.target} | {c.method} | {c.metrics.get('mAP', '-')} | "
                  f"{c.metrics.get('rank1', '-')} | {c.ref} |" for c in context]
    return "\n".join(lines) + "\n" + orderings_markdown(orderings(rows, references))


def table_csv(rows: Sequence[Row]) -> str:
    header = ["source", "target", "method", "runs", "failed"]
    for k in METRICS:
        header += [f"{k}_mean", f"{k}_std"]
    header += ["paper_mAP", "paper_rank1", "paper_source"]
    lines = [",".join(header)]
    for r in rows:
        n = max((s[2] for s in r.ours.values()), default=0)
        vals = [r.source, r.target, r.method, str(n), str(r.failed)]
        for k in METRICS:
            vals += [f"{r.ours[k][0]:.2f}", f"{r.ours[k][1]:.2f}"] if k in r.ours else ["", ""]
        pm = r.reference.metrics if r.reference else {}
        vals += [str(pm.get("mAP", "")), str(pm.get("rank1", "")),
                 f"\"{r.reference.ref}\"" if r.reference else ""]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def plot_table(rows: Sequence[Row], path: Path) -> Path:
    """Grouped bars of mAP (mean, std error bars): pairs on the x axis, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uda_reid.utils.atomic import atomic_save

    pairs = list(dict.fromkeys(f"{r.source}→{r.target}" for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(pairs), 3.6))
    for j, method in enumerate(methods):
        means, stds = [], []
        for pair in pairs:
            row = next((r for r in rows if f"{r.source}→{r.target}" == pair
                        and r.method == method), None)
            stat = row.ours.get("mAP") if row else None
            means.append(stat[0] if stat else 0.0)
            stds.append(stat[1] if stat else 0.0)
        ax.bar(np.arange(len(pairs)) + (j - (len(methods) - 1) / 2) * width, means, width,
               yerr=stds, capsize=3, label=method)
    ax.set_xticks(np.arange(len(pairs)))
    ax.set_xticklabels(pairs)
    ax.set_ylabel("target mAP (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = atomic_save(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return out


def write_outputs(rows: Sequence[Row], references: Sequence[Reference], root: Path
                  ) -> Dict[str, Path]:
    return {"md": atomic_write_text(root / "table.md", table_markdown(rows, references)),
            "csv": atomic_write_text(root / "table.csv", table_csv(rows)),
            "png": plot_table(rows, root / "table.png")}


def estimate_seconds(cells: Sequence[Cell], root: Path, default: float) -> Dict[Cell, float]:
    """Expected time per cell: the mean wall time of finished cells with the same method and
    pair, else of the same method, else ``default``."""
    done = {c: r for c in cells if (r := read_cell(c, root)) is not None}

    def mean(sel) -> Optional[float]:
        times = [r.get("wall_seconds", 0.0) for c, r in done.items() if sel(c)]
        return float(np.mean(times)) if times else None

    out = {}
    for c in cells:
        out[c] = (mean(lambda d: (d.method, d.source, d.target) == (c.method, c.source, c.target))
                  or mean(lambda d: d.method == c.method) or default)
    return out
