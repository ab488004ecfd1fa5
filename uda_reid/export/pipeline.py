"""Export a trained model's test-time feature path and check it against PyTorch on a test set.

Behind ``tools/export.py``: the checkpoint ``MODEL.WEIGHTS`` is loaded on the CPU, wrapped as
:class:`RetrievalFeatures` (eval mode, ``TEST.FLIP``) and written in each requested format.
The parity check extracts the features of a test set with the PyTorch model, exactly as the
evaluation does, and with each exported file, and reports the largest absolute feature
difference and the retrieval metrics (mAP, rank-1) computed from each, with ``TEST.*``.
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
from torch import Tensor, nn

from uda_reid.config import Config
from uda_reid.data.loaders import build_test_set_from_config
from uda_reid.engine.evaluate import side_info_domain_of
from uda_reid.engine.trained_model import load_trained_model
from uda_reid.evaluation.evaluator import evaluate_from_config, evaluate_splits
from uda_reid.evaluation.extract import extract_features
from uda_reid.export.feature_model import RetrievalFeatures
from uda_reid.export.formats import INPUT_NAME, OUTPUT_NAME, example_images, get_format
from uda_reid.models.forward import side_info_domain
from uda_reid.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

REPORTED_METRICS = ("mAP", "rank1")


def retrieval_summary(cfg: Config, feats: Tensor, pids: np.ndarray, camids: np.ndarray,
                      splits: Sequence) -> Dict[str, float]:
    """mAP and rank-1 of features (N, D) on the dataset's splits, with ``cfg.TEST``."""
    metrics = evaluate_splits(partial(evaluate_from_config, cfg), feats, pids, camids, splits)
    return {key: float(metrics[key]) for key in REPORTED_METRICS}


def check_parity(cfg: Config, model: nn.Module, dataset: str,
                 exported: Mapping[str, nn.Module]) -> Dict[str, Any]:
    """Features of test set ``dataset`` from ``model`` (the evaluation's extraction, on the
    CPU) and from each ``exported`` module: ``{"dataset", "num_images", "pytorch": {mAP,
    rank1}, <format>: {"max_abs_diff", mAP, rank1}}``."""
    loader, _, splits = build_test_set_from_config(cfg, dataset)
    with side_info_domain(model, side_info_domain_of(cfg, dataset)):
        reference, pids, camids, _ = extract_features(model, loader, cfg.TEST.FLIP, "cpu")
    pids, camids = pids.numpy(), camids.numpy()
    report: Dict[str, Any] = {"dataset": dataset, "num_images": len(reference),
                              "pytorch": retrieval_summary(cfg, reference, pids, camids, splits)}
    for fmt, module in exported.items():
        feats, *_ = extract_features(module, loader, False, "cpu")  # flip is inside the graph
        if feats.shape != reference.shape:
            raise RuntimeError(f"{fmt} features have shape {tuple(feats.shape)}, PyTorch's "
                               f"{tuple(reference.shape)}")
        report[fmt] = {"max_abs_diff": float((feats - reference).abs().max()),
                       **retrieval_summary(cfg, feats, pids, camids, splits)}
    return report


def parity_failures(parity: Mapping[str, Any], atol: float) -> List[str]:
    """One line per exported format whose features differ from PyTorch's by more than
    ``atol``."""
    return [f"{fmt}: max |feature difference| {values['max_abs_diff']:.3g} > {atol:g}"
            for fmt, values in parity.items()
            if isinstance(values, Mapping) and values.get("max_abs_diff", 0.0) > atol]


def format_parity(parity: Mapping[str, Any]) -> str:
    """The parity report as a small table (metrics in percent)."""
    lines = [f"Parity on {parity['dataset']} ({parity['num_images']} images):",
             f"  {'model':<12} {'max |diff|':>11} {'mAP':>8} {'rank-1':>8}"]
    for name, values in parity.items():
        if not isinstance(values, Mapping):
            continue
        diff = f"{values['max_abs_diff']:.2e}" if "max_abs_diff" in values else "-"
        lines.append(f"  {name:<12} {diff:>11} {100 * values['mAP']:>8.2f} "
                     f"{100 * values['rank1']:>8.2f}")
    return "\n".join(lines)


def export_model(cfg: Config, formats: Sequence[str], output_dir: Path,
                 parity_dataset: Optional[str] = None) -> Dict[str, Any]:
    """Export ``MODEL.WEIGHTS`` in ``formats`` under ``output_dir``; with ``parity_dataset``
    check every file against PyTorch on that test set (:func:`check_parity`). Writes and
    returns ``export_report.json`` (files, input contract, parity)."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("MODEL.WEIGHTS is empty: give the checkpoint to export")
    specs = {fmt: get_format(fmt) for fmt in formats}
    model = load_trained_model(cfg, cfg.MODEL.WEIGHTS, "cpu")
    # SIE reads cameras as on the test set the export is checked on (default: the source's)
    domain = side_info_domain_of(cfg, parity_dataset) if parity_dataset else "source"
    with side_info_domain(model, domain):
        features = RetrievalFeatures(model, flip=cfg.TEST.FLIP)
    example = example_images(tuple(cfg.INPUT.SIZE_TEST))
    files = {fmt: str(spec.write(features, example, output_dir / spec.filename))
             for fmt, spec in specs.items()}
    report: Dict[str, Any] = {
        "weights": str(cfg.MODEL.WEIGHTS), "files": files,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, *cfg.INPUT.SIZE_TEST],
                  "pixel_mean": list(cfg.INPUT.PIXEL_MEAN), "pixel_std": list(cfg.INPUT.PIXEL_STD),
                  "range": "RGB in [0, 1], then (x - mean) / std"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", "dim"], "flip_averaged": cfg.TEST.FLIP,
                   "sie_domain": domain}}
    if parity_dataset:
        exported = {fmt: specs[fmt].load(Path(path)) for fmt, path in files.items()}
        report["parity"] = check_parity(cfg, model, parity_dataset, exported)
    atomic_write_json(output_dir / "export_report.json", report)
    return report
