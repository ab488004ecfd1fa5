"""The few lines that end every ``tools/adapt.py`` run: what adaptation changed on the target,
how long it took, where the outputs are and what to run next."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


# The first stage's row: the source model (direct transfer) or, for a one-stage method, the
# untrained initial model.
STARTS = {"source": "source only (direct)", "initial": "initial weights (untrained)",
          "start": "start model (no source)"}
# The method the summary suggests trying next on the same pair (FastReID's cross-domain
# method, the strongest of the package's recipes that reuse the cached source model).
NEXT_METHOD = "mlt"


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}"


def adaptation_summary(results: Mapping[str, Any], output_dir: Path) -> str:
    """Source-only (direct transfer; or the initial model of a one-stage run) vs adapted
    target mAP / rank-1 from ``results``
    (``results.json``'s content), their change in points, the wall time, the output files and
    the next commands. A run without a source starts from the start model (no direct
    transfer)."""
    target, method = results["target"], results["method"]
    before = results["stages"][0]["metrics"][target]
    after = results["metrics"][target]
    adapted = len(results["stages"]) > 1
    start = results["stages"][0]["name"]
    rows = [(STARTS.get(start, start), before)]
    if adapted:
        rows.append((f"adapted ({method}, last)", after))
    width = max(len(name) for name, _ in rows)
    lines = [f"Summary: {results['source']} -> {target}, {method}, seed {results['seed']}",
             f"  {'':<{width}} {'mAP':>6} {'rank-1':>7}"]
    lines += [f"  {name:<{width}} {_pct(m['mAP']):>6} {_pct(m['rank1']):>7}" for name, m in rows]
    if adapted:
        lines.append(f"  {'change (points)':<{width}} {100 * (after['mAP'] - before['mAP']):>+6.1f} "
                     f"{100 * (after['rank1'] - before['rank1']):>+7.1f}")
    minutes, seconds = divmod(int(round(results["wall_seconds"])), 60)
    lines += [f"  wall time {minutes} min {seconds:02d} s",
              f"  results: {output_dir / 'results.json'}",
              f"  TensorBoard logs: {output_dir}"]
    if adapted:
        lines.append(f"Next: python tools/test.py --config-file {output_dir / 'config.yaml'} "
                     f"MODEL.WEIGHTS {output_dir / 'last.pth'} "
                     f"DATASETS.TESTS \"('{target}',)\" --vis 20")
    lines.append(f"      tensorboard --logdir {output_dir}")
    if results["method"] != NEXT_METHOD and results["stages"][0]["name"] == "source":
        lines.append(f"      python tools/adapt.py --source {results['source']} --target {target} "
                     f"--method {NEXT_METHOD}  # reuses the source model when cached")
    return "\n".join(lines)
