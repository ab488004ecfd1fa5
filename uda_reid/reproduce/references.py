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
# "<owner>/<repository> <file in it>" or a paper's "arXiv:<id> <Table|Figure> <n>", then any
# detail; citation() gives the part before the detail
SOURCE_PATTERN = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+) (?P<file>[\w./-]+)"
                            r"|(?P<paper>arXiv:\d{4}\.\d{4,5}) (?P<where>(?:Table|Figure) \d+)")


def citation(ref: str) -> str:
    """``"<owner>/<repository> <file>"`` or ``"arXiv:<id> Table <n>"``: where ``ref`` points."""
    match = SOURCE_PATTERN.match(ref)
    if match is None:
        raise ValueError(f"ref {ref!r} must start with '<owner>/<repository> <file>' or "
                         "'arXiv:<id> Table <n>'")
    return (f"{match['repo']} {match['file']}" if match["repo"]
            else f"{match['paper']} {match['where']}")


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
        try:
            citation(str(entry["ref"]))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
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
