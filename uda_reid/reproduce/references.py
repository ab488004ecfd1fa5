"""Published reference numbers (``configs/reproduce/references.yml``), validated on load."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import re

import yaml

from uda_reid.data.datasets import DATASETS
from uda_reid.recipes import recipe_file

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
# "<owner>/<repository> <file in it>", then any detail
SOURCE_PATTERN = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+) (?P<file>[\w./-]+)")


@dataclass(frozen=True)
class Reference:
    method: str
    ours: Optional[str]  # the method of ours it is compared with, or None
    source: str
    target: str
    metrics: dict  # percent
    ref: str


def load_references(path: Optional[str | Path] = None) -> List[Reference]:
    """Every entry of the file (default: the recipes' ``reproduce/references.yml``); an entry
    without a source (``ref``: repository and file), pair or metric is an error naming its
    position."""
    path = recipe_file("reproduce", "references.yml") if path is None else path
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries")
    out = []
    for i, entry in enumerate(data):
        where = f"{path} entry {i + 1}"
        for key in ("method", "source", "target", "ref"):
            if not entry.get(key):
                raise ValueError(f"{where}: missing '{key}'")
        if not SOURCE_PATTERN.match(str(entry["ref"])):
            raise ValueError(f"{where}: ref {entry['ref']!r} must start with "
                             "'<owner>/<repository> <file>'")
        unknown = set(entry) - {"method", "ours", "source", "target", "ref", *METRIC_KEYS}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        metrics = {k: float(entry[k]) for k in METRIC_KEYS if k in entry}
        if not metrics:
            raise ValueError(f"{where}: no metric among {METRIC_KEYS}")
        out.append(Reference(entry["method"], entry.get("ours"),
                             DATASETS.canonical(entry["source"]),
                             DATASETS.canonical(entry["target"]), metrics, entry["ref"]))
    return out
