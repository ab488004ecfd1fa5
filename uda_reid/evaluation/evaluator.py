"""From query/gallery features to ReID metrics: distances, query expansion, re-ranking,
rank metrics and ROC, with explicit options or from the ``TEST`` section."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Sequence, Tuple, Type, TypeVar, Union

import numpy as np

from uda_reid.config.sections.test import (QueryExpansionConfig, RerankConfig, RocConfig,
                                           TestConfig)
from uda_reid.evaluation.distances import compute_distance
from uda_reid.evaluation.protocol import ArrayLike
from uda_reid.evaluation.query_expansion import database_augmentation, query_expansion
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.roc import evaluate_roc


class RerankOptions(NamedTuple):
    """k-reciprocal re-ranking options; defaults and meaning: ``TEST.RERANK``."""

    enabled: bool = RerankConfig.ENABLED
    k1: int = RerankConfig.K1
    k2: int = RerankConfig.K2
    lambda_value: float = RerankConfig.LAMBDA


class QueryExpansionOptions(NamedTuple):
    """Query expansion options (``database``: expand the gallery first); defaults and
    meaning: ``TEST.QE``."""

    enabled: bool = QueryExpansionConfig.ENABLED
    k: int = QueryExpansionConfig.K
    alpha: float = QueryExpansionConfig.ALPHA
    database: bool = QueryExpansionConfig.DATABASE


class RocOptions(NamedTuple):
    """ROC options; defaults and meaning: ``TEST.ROC``."""

    enabled: bool = RocConfig.ENABLED
    fprs: Tuple[float, ...] = RocConfig.FPRS
    fastreid_compat: bool = RocConfig.FASTREID_COMPAT


Options = TypeVar("Options", RerankOptions, QueryExpansionOptions, RocOptions)


def options_from_section(options: Type[Options], section: Any) -> Options:
    """The ``options`` tuple of a ``TEST`` subsection (``TEST.RERANK`` -> :class:`RerankOptions`):
    the section's keys, in order, are the tuple's fields."""
    values = [getattr(section, f.name) for f in dataclasses.fields(section)]
    if len(values) != len(options._fields):
        raise TypeError(f"{type(section).__name__} has {len(values)} keys, {options.__name__} "
                        f"{len(options._fields)} fields")
    return options(*values)


def retrieval_distance(qf: ArrayLike, gf: ArrayLike, metric: str = TestConfig.METRIC,
                       rerank: Sequence = RerankOptions(),
                       qe: Sequence = QueryExpansionOptions()) -> np.ndarray:
    """(Q, D), (G, D) features -> (Q, G) float32 distances after optional query expansion
    (``qe``: (enabled, k, alpha[, database])) and k-reciprocal re-ranking (``rerank``:
    (enabled, k1, k2, lambda))."""
    rerank, qe = RerankOptions(*rerank), QueryExpansionOptions(*qe)
    if qe.enabled:
        if qe.database:
            gf = database_augmentation(gf, qe.k, qe.alpha)
        qf = query_expansion(qf, gf, qe.k, qe.alpha)
    if rerank.enabled:
        from uda_reid.evaluation.rerank import re_ranking_features

        return re_ranking_features(qf, gf, k1=rerank.k1, k2=rerank.k2,
                                   lambda_value=rerank.lambda_value, metric=metric)
    return compute_distance(qf, gf, metric)


def evaluate_distances(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                       q_camids: ArrayLike, g_camids: ArrayLike,
                       roc: Union[bool, Sequence] = False,
                       max_rank: int = TestConfig.MAX_RANK,
                       skip_no_match: bool = TestConfig.SKIP_NO_MATCH,
                       protocol: str = TestConfig.PROTOCOL) -> Dict[str, Any]:
    """Metrics of a (Q, G) distance matrix: ``mAP``, ``mINP``, ``rank1``/``rank5``/``rank10``
    (fractions), ``num_valid_queries``, ``num_no_match``; with ``roc`` (a bool or
    (enabled, fprs, fastreid_compat)) also ``TPR@FPR=1e-04``-style keys and ``roc_curve``
    ({"fpr", "tpr"} arrays)."""
    ranks = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max(max_rank, 10),
                          protocol=protocol, skip_no_match=skip_no_match)
    cmc = ranks["cmc"]
    results: Dict[str, Any] = {
        "mAP": ranks["mAP"], "mINP": ranks["mINP"], "rank1": float(cmc[0]),
        "rank5": float(cmc[4]), "rank10": float(cmc[9]),
        "num_valid_queries": ranks["num_valid_queries"], "num_no_match": ranks["num_no_match"]}
    options = RocOptions(enabled=roc) if isinstance(roc, bool) else RocOptions(*roc)
    if options.enabled:
        curve = evaluate_roc(distmat, q_pids, g_pids, q_camids, g_camids, options.fprs,
                             options.fastreid_compat)
        results.update({f"TPR@FPR={f:.0e}": t for f, t in curve["tpr_at_fpr"].items()})
        results["roc_curve"] = {"fpr": curve["fpr"], "tpr": curve["tpr"]}
    return results


def evaluate_features(qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                      q_camids: ArrayLike, g_camids: ArrayLike,
                      metric: str = TestConfig.METRIC,
                      rerank: Sequence = RerankOptions(),
                      qe: Sequence = QueryExpansionOptions(),
                      roc: Union[bool, Sequence] = False,
                      max_rank: int = TestConfig.MAX_RANK,
                      skip_no_match: bool = TestConfig.SKIP_NO_MATCH,
                      protocol: str = TestConfig.PROTOCOL) -> Dict[str, Any]:
    """Features (Q, D), (G, D) -> :func:`evaluate_distances` results plus ``distmat``, the
    (Q, G) float32 distances they were computed from (see :func:`retrieval_distance`)."""
    distmat = retrieval_distance(qf, gf, metric, rerank, qe)
    results = evaluate_distances(distmat, q_pids, g_pids, q_camids, g_camids, roc, max_rank,
                                 skip_no_match, protocol)
    results["distmat"] = distmat
    return results


def evaluate_from_section(opts: TestConfig, qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike,
                          g_pids: ArrayLike, q_camids: ArrayLike, g_camids: ArrayLike
                          ) -> Dict[str, Any]:
    """:func:`evaluate_features` with the options of the ``TEST`` section (METRIC, RERANK.*,
    QE.*, ROC.*, MAX_RANK, SKIP_NO_MATCH, PROTOCOL)."""
    return evaluate_features(
        qf, gf, q_pids, g_pids, q_camids, g_camids, metric=opts.METRIC,
        rerank=options_from_section(RerankOptions, opts.RERANK),
        qe=options_from_section(QueryExpansionOptions, opts.QE),
        roc=options_from_section(RocOptions, opts.ROC),
        max_rank=opts.MAX_RANK, skip_no_match=opts.SKIP_NO_MATCH, protocol=opts.PROTOCOL)


def evaluate_from_config(cfg: Any, qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike,
                         g_pids: ArrayLike, q_camids: ArrayLike, g_camids: ArrayLike
                         ) -> Dict[str, Any]:
    """Entry point for the run flows: :func:`evaluate_from_section` of ``cfg.TEST``."""
    return evaluate_from_section(cfg.TEST, qf, gf, q_pids, g_pids, q_camids, g_camids)


def evaluate_splits(evaluate: Callable[..., Dict[str, Any]], feats: ArrayLike, pids: ArrayLike,
                    camids: ArrayLike, splits: Sequence[Tuple[Any, Any]]) -> Dict[str, Any]:
    """``evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids)`` (e.g. a partial of
    :func:`evaluate_from_config`) on each (query, gallery) split (index arrays or slices) of features
    (N, D) with ids and cameras (N,). Numbers are averaged over the splits; other values
    (``distmat``, ``roc_curve``) are the first split's. One split gives its result unchanged."""
    results = [evaluate(feats[q], feats[g], pids[q], pids[g], camids[q], camids[g])
               for q, g in splits]
    if len(results) == 1:
        return results[0]
    merged = dict(results[0])
    for key, value in merged.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = float(np.mean([r[key] for r in results]))
    return merged
