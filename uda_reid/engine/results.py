"""``results.json``: a run's metrics and metadata (DESIGN.md "Outputs"), read by the tools.

Metrics are fractions in [0, 1], keyed by test dataset name, e.g.
``{"synth-market": {"mAP": 0.71, "mINP": 0.3, "rank1": 0.9, "rank5": 0.96, "rank10": 0.98}}``.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from uda_reid.utils.atomic import atomic_write_json
from uda_reid.utils.distributed import on_main_process

REQUIRED_KEYS = ("task", "method", "source", "target", "seed", "git_commit", "finished_at",
                 "wall_seconds", "metrics", "stages")
TASKS = ("train", "adapt")


def git_commit(path: os.PathLike | str = Path(__file__).resolve().parent) -> Optional[str]:
    """The commit hash of the git checkout holding ``path`` (``None`` outside git), with a
    ``-dirty`` suffix when tracked files have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def validate_metrics(metrics: Mapping[str, Mapping[str, float]], where: str) -> None:
    """Every value a number in [0, 1]; the error names ``where`` and the key."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{where}: metrics must map dataset names to metric dicts")
    for dataset, values in metrics.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: metrics['{dataset}'] must be a mapping")
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}: metrics['{dataset}']['{name}'] = {value!r} is not a "
                                 "fraction in [0, 1]")


def validate_results(results: Mapping[str, Any], where: str = "results") -> None:
    """Check the shape DESIGN.md promises; the error names ``where`` and the key at fault."""
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    if results["task"] not in TASKS:
        raise ValueError(f"{where}: task must be one of {TASKS}, got {results['task']!r}")
    validate_metrics(results["metrics"], where)
    for i, stage in enumerate(results["stages"]):
        if not isinstance(stage, Mapping) or "name" not in stage or "metrics" not in stage:
            raise ValueError(f"{where}: stages[{i}] needs 'name' and 'metrics'")
        validate_metrics(stage["metrics"], f"{where} stages[{i}]")


def build_results(task: str, method: str, source: str, target: Optional[str], seed: int,
                  metrics: Mapping[str, Mapping[str, float]], wall_seconds: float,
                  stages: Sequence[Mapping[str, Any]] = (),
                  extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The results dict (validated), stamped with the git commit, the current UTC time, the
    torch version and its CPU thread count (both decide the order of floating-point sums, so a
    rerun repeats the numbers exactly only with the same ones); ``extra`` adds keys (e.g.
    ``"curves"``) after the required ones."""
    results: Dict[str, Any] = {
        "task": task, "method": method, "source": source, "target": target, "seed": seed,
        "git_commit": git_commit(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(float(wall_seconds), 3),
        "metrics": {d: dict(v) for d, v in metrics.items()},
        "stages": [dict(s) for s in stages],
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
    }
    results.update(extra or {})
    validate_results(results)
    return results


def write_results(path: os.PathLike | str, results: Mapping[str, Any]) -> Path:
    """Validate and write ``results`` atomically as JSON (rank 0 only under
    torch.distributed)."""
    validate_results(results, str(path))
    on_main_process(lambda: atomic_write_json(path, results))
    return Path(path)


def read_results(path: os.PathLike | str) -> Dict[str, Any]:
    """Read and validate a ``results.json``."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"No results file at {path}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    validate_results(results, str(path))
    return results
