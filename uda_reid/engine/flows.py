"""The train and test flows behind ``tools/train.py`` and ``tools/test.py``: each holds the
root config and the run's context (output folder, logging, seeding, device, results)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Sequence

from uda_reid.config import Config
from uda_reid.data.loaders import build_train_loader_from_config
from uda_reid.engine.device import resolve_device
from uda_reid.engine.distributed import init_distributed
from uda_reid.engine.evaluate import build_evaluator, evaluate_dataset
from uda_reid.engine.hooks import HookBase, Metrics, WallClockHook
from uda_reid.engine.logger import setup_logger
from uda_reid.engine.output_dir import check_output_dir, claim_output_dir
from uda_reid.engine.results import build_results, write_results
from uda_reid.engine.run_folder import check_output_folder
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trained_model import load_trained_model
from uda_reid.engine.trainer import SupervisedStep
from uda_reid.engine.trainer_builder import build_trainer, resume_or_start
from uda_reid.losses import build_loss_fn
from uda_reid.models import build_model
from uda_reid.utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)

TEST_METRICS = "test_metrics.json"


def train(cfg: Config, resume: bool = False, extra_hooks: Sequence[HookBase] = (),
          overwrite: bool = False) -> Dict[str, Any]:
    """Source-supervised training on ``DATASETS.NAMES`` evaluated on ``DATASETS.TESTS``;
    writes ``results.json`` beside the checkpoints and returns it. ``extra_hooks`` run
    before evaluation and checkpointing (see :func:`build_trainer`). Data, model and loss are
    built before anything is written to ``OUTPUT_DIR`` (:func:`claim_output_dir`)."""
    setup_logger()  # set-up records wait for the folder (a previous run's log gets none)
    check_output_dir(cfg, resume, overwrite)
    init_distributed(cfg.MODEL.DEVICE)  # under a launcher: the loaders take this rank's share
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    train_loader, num_classes = build_train_loader_from_config(cfg)
    model = build_model(cfg, num_classes).to(device)  # MODEL.WEIGHTS: initial weights
    step = SupervisedStep(train_loader, build_loss_fn(cfg), device)
    output_dir = claim_output_dir(cfg, resume, overwrite)
    iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH or len(train_loader)
    trainer, checkpointer = build_trainer(cfg, model, step, iters_per_epoch,
                                          build_evaluator(cfg, model), extra_hooks,
                                          meta={"num_classes": num_classes})
    resume_or_start(trainer, checkpointer, resume)
    trainer.train()
    final = trainer.metrics[max(trainer.metrics)]
    clock = next(h for h in trainer.hooks if isinstance(h, WallClockHook))
    results = build_results(
        "train", "supervised", "+".join(cfg.DATASETS.NAMES), None, cfg.SEED, final,
        clock.elapsed, stages=[{"name": "supervised", "metrics": final}],
        extra={"curves": {str(e): m for e, m in sorted(trainer.metrics.items())},
               "epochs": trainer.max_epoch, "num_classes": num_classes})
    path = write_results(output_dir / "results.json", results)
    logger.info("Results written to %s", path)
    return results


def test(cfg: Config, vis_count: int = 0, overwrite: bool = False) -> Metrics:
    """Evaluate ``MODEL.WEIGHTS`` on ``DATASETS.TESTS``; writes ``test_metrics.json`` (and,
    with ``vis_count`` > 0, rank-list and ROC images under ``OUTPUT_DIR/vis``). An earlier
    ``test_metrics.json`` there is replaced only with ``overwrite``; nothing is written before
    the weights have loaded."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("MODEL.WEIGHTS is empty: give the checkpoint to test "
                         "(e.g. MODEL.WEIGHTS output/run/last.pth)")
    output_dir = Path(cfg.OUTPUT_DIR)
    setup_logger()  # set-up records wait for the folder (a previous run's log gets none)
    check_output_folder(output_dir, overwrite=overwrite, markers=(TEST_METRICS,),
                        what="test results", resumable=False)
    device = resolve_device(cfg.MODEL.DEVICE)
    model = load_trained_model(cfg, cfg.MODEL.WEIGHTS, device)
    setup_logger(output_dir)
    vis_dir = output_dir / "vis" if vis_count > 0 else None
    metrics = {name: evaluate_dataset(cfg, model, name, device, vis_dir, vis_count)
               for name in cfg.DATASETS.TESTS}
    for name, values in metrics.items():
        logger.info("%s: %s", name, ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    atomic_write_json(output_dir / TEST_METRICS,
                      {"weights": str(cfg.MODEL.WEIGHTS), "metrics": metrics})
    return metrics
