"""Choosing a synthetic recipe's values on the development domains.

The rule: a value of an adaptation recipe is chosen without the labels of the domains it is
reported on. The synthetic tables are reported on the domains drawn with
``DATASETS.SYNTH_SEED 0``; values are chosen on another draw of both domains (the development
domains, ``SYNTH_SEED 1``), where any label may be used. :func:`require_development` refuses
the reporting draw and real datasets; :func:`sweep_clustering` scores the pseudo-labels of a
grid of k-reciprocal ``k1`` and DBSCAN ``eps`` values against the development target's true
identities.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from uda_reid.adapt.clustering import DBSCANBackend
from uda_reid.adapt.label_quality import label_quality
from uda_reid.adapt.pseudo_labels import multi_granularity_labels
from uda_reid.config import ConfigError
from uda_reid.data.datasets import DATASETS
from uda_reid.utils.knn import ArrayLike

REPORTING_SYNTH_SEED = 0
DEVELOPMENT_SYNTH_SEED = 1
CRITERIA = ("ari", "nmi", "pairwise_f")
COLUMNS = ("k1", "eps", "ari", "nmi", "pairwise_precision", "pairwise_recall", "pairwise_f",
           "num_clusters", "num_outliers")


def require_development(cfg) -> None:
    """Raise ConfigError unless ``ADAPT.SOURCE`` and ``ADAPT.TARGET`` are synthetic domains
    drawn with a ``DATASETS.SYNTH_SEED`` other than the reporting one."""
    for key in ("SOURCE", "TARGET"):
        name = getattr(cfg.ADAPT, key)
        if not getattr(DATASETS.get(name), "synthetic", False):
            raise ConfigError(f"ADAPT.{key}={name}: selection runs on synthetic development "
                              "domains only (real datasets have no development draw)")
    if cfg.DATASETS.SYNTH_SEED == REPORTING_SYNTH_SEED:
        raise ConfigError(f"DATASETS.SYNTH_SEED={REPORTING_SYNTH_SEED} is the reporting draw of "
                          "the synthetic domains; choose values on a development draw, e.g. "
                          f"DATASETS.SYNTH_SEED {DEVELOPMENT_SYNTH_SEED}")


def sweep_clustering(features: ArrayLike, true_ids: Sequence[int], k1_values: Sequence[int],
                     eps_values: Sequence[float], k2: int = 6, min_samples: int = 4
                     ) -> List[Dict[str, float]]:
    """One row per (k1, eps): DBSCAN on the k-reciprocal Jaccard distance of ``features``
    (N, D), outliers dropped, scored against ``true_ids`` (N,) by
    :func:`~uda_reid.adapt.label_quality.label_quality` (outliers count as singletons)."""
    true = np.asarray(true_ids, dtype=np.int64)
    rows = []
    for k1 in k1_values:
        results = multi_granularity_labels(features, list(eps_values),
                                           DBSCANBackend(min_samples), "drop", int(k1), k2)
        for eps, result in zip(eps_values, results):
            rows.append({"k1": int(k1), "eps": float(eps), **label_quality(result.labels, true)})
    return rows


def best_rows(rows: Sequence[Dict[str, float]], criterion: str = "ari", top: int = 1
              ) -> List[Dict[str, float]]:
    """The ``top`` rows with the highest ``criterion`` (ties: the earlier row first)."""
    if criterion not in CRITERIA:
        raise ConfigError(f"selection criterion '{criterion}' is not one of {list(CRITERIA)}")
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][criterion], i))
    return [rows[i] for i in order[:top]]


def sweep_markdown(rows: Sequence[Dict[str, float]]) -> str:
    """A markdown table of the sweep rows (scores in %, counts as integers)."""
    head = ["k1", "eps", "ARI", "NMI", "pair precision", "pair recall", "pair F", "clusters",
            "outliers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        scores = [f"{100 * r[k]:.1f}" for k in COLUMNS[2:7]]
        lines.append(f"| {r['k1']} | {r['eps']:.2f} | " + " | ".join(scores)
                     + f" | {r['num_clusters']} | {r['num_outliers']} |")
    return "\n".join(lines) + "\n"
