"""Evaluating a model on the config's test datasets (``DATASETS.TESTS`` with ``TEST.*``)."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uda_reid.config import Config
from uda_reid.data.datasets import DATASETS
from uda_reid.data.loaders import build_test_set_from_config
from uda_reid.engine.device import resolve_device
from uda_reid.engine.hooks import Metrics
from uda_reid.evaluation.evaluator import evaluate_from_config, evaluate_splits
from uda_reid.evaluation.extract import extract_features
from uda_reid.evaluation.roc import evaluate_roc
from uda_reid.evaluation.visualize import save_rank_lists, save_roc_plot
from uda_reid.models.forward import side_info_domain
from uda_reid.utils.distributed import main_process_result

logger = logging.getLogger(__name__)


def side_info_domain_of(cfg: Config, name: str) -> str:
    """``source`` when test dataset ``name`` is one of ``DATASETS.NAMES`` (SIE reads its camera
    ids as trained), else ``target`` (another domain's cameras follow the SIE target policy)."""
    trained_on = {DATASETS.canonical(n) for n in cfg.DATASETS.NAMES}
    return "source" if DATASETS.canonical(name) in trained_on else "target"


def evaluate_dataset(cfg: Config, model: nn.Module, name: str, device: torch.device,
                     vis_dir: Optional[Path] = None, vis_count: int = 0) -> Dict[str, float]:
    """Extract query and gallery features of test dataset ``name`` and evaluate them with
    ``cfg.TEST`` (metric, re-ranking, query expansion, ROC); metrics are fractions in [0, 1].

    With ``vis_count`` > 0, rank lists of the first ``vis_count`` queries and the ROC curve
    are drawn under ``vis_dir/name``.
    """
    loader, _, splits = build_test_set_from_config(cfg, name)
    with side_info_domain(model, side_info_domain_of(cfg, name)):
        feats, pids, camids, paths = extract_features(model, loader, cfg.TEST.FLIP, device)
    pids, camids = pids.numpy(), camids.numpy()

    def evaluate() -> Dict[str, float]:
        metrics = evaluate_splits(partial(evaluate_from_config, cfg), feats, pids, camids,
                                  splits)
        q, g = splits[0]
        ids = [pids[q], pids[g], camids[q], camids[g]]
        dist, curve = metrics.pop("distmat"), metrics.pop("roc_curve", None)
        logger.info("%s: %d queries, %d gallery images, %d queries with a valid match, "
                    "%d without%s", name, len(ids[0]), len(ids[1]),
                    metrics.pop("num_valid_queries"), metrics.pop("num_no_match"),
                    f" (metrics averaged over {len(splits)} query/gallery draws)"
                    if len(splits) > 1 else "")
        if vis_count > 0 and vis_dir is not None:
            out = vis_dir / name
            names = np.asarray(paths, dtype=object)
            save_rank_lists(dist, list(names[q]), list(names[g]), *ids, out,
                            num_queries=vis_count)
            curve = curve or evaluate_roc(dist, *ids)
            save_roc_plot(curve["fpr"], curve["tpr"], out / "roc.png")
            logger.info("Rank lists and ROC curve of %s written to %s", name, out)
        return metrics

    return main_process_result(evaluate)  # under torch.distributed: once, on rank 0


def build_evaluator(cfg: Config, model: nn.Module,
                    dataset_names: Optional[Sequence[str]] = None) -> Callable[[], Metrics]:
    """A callable evaluating ``model`` on each test dataset (default ``DATASETS.TESTS``)."""
    names = tuple(dataset_names or cfg.DATASETS.TESTS)
    if not names:
        raise ValueError("DATASETS.TESTS is empty: nothing to evaluate on")
    device = resolve_device(cfg.MODEL.DEVICE)

    def evaluate() -> Metrics:
        return {name: evaluate_dataset(cfg, model, name, device) for name in names}

    return evaluate
