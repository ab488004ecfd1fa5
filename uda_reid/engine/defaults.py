"""Default set-up and the train / test flows behind ``tools/train.py`` and ``tools/test.py``.

Adaptation methods reuse :func:`build_trainer` (optimiser, LR schedule, freezing, evaluation,
TensorBoard, progress and checkpoint hooks around their own :class:`TrainStep`),
:func:`resume_or_start`, :func:`build_evaluator` and :mod:`uda_reid.engine.results`.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import sys
import traceback
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from uda_reid.config import Config, load_config, save_config
from uda_reid.config.renamed import renamed_mapping
from uda_reid.config.schema import to_dict
from uda_reid.data.datasets import DATASETS
from uda_reid.data.loaders import build_test_set_from_config, build_train_loader_from_config
from uda_reid.engine.checkpoint import (CheckpointMismatchError, Checkpointer, identity_diff,
                                       load_model_weights, read_checkpoint_meta)
from uda_reid.engine.distributed import init_distributed, prepare_ranks
from uda_reid.engine.freeze import FreezeHook
from uda_reid.engine.hooks import (CheckpointHook, EvalHook, HookBase, LRSchedulerHook,
                                   Metrics, ProgressHook, TensorBoardHook, WallClockHook)
from uda_reid.engine.logger import log_to_files, setup_logger
from uda_reid.engine.lr_schedule import build_lr_scheduler
from uda_reid.engine.optim import build_optimizer_from_config
from uda_reid.engine.run_folder import check_output_folder, clear_run_outputs
from uda_reid.engine.results import build_results, write_results
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer import SupervisedStep, Trainer, TrainStep
from uda_reid.evaluation.evaluator import evaluate_from_config, evaluate_splits
from uda_reid.evaluation.extract import extract_features
from uda_reid.evaluation.roc import evaluate_roc
from uda_reid.evaluation.visualize import save_rank_lists, save_roc_plot
from uda_reid.losses import build_loss_fn
from uda_reid.models import build_model
from uda_reid.models.forward import side_info_domain
from uda_reid.utils.atomic import atomic_write_json
from uda_reid.utils.distributed import (barrier, is_main_process, main_process_result,
                                        on_main_process)
from uda_reid.utils.errors import UserError

logger = logging.getLogger(__name__)

TEST_METRICS = "test_metrics.json"
# Keys that say where a run writes or which device it uses, not what it computes.
NON_IDENTITY_KEYS = ("OUTPUT_DIR", "MODEL.DEVICE")


def default_argument_parser(description: str, eval_only: bool = True) -> argparse.ArgumentParser:
    """``--config-file F [--resume] [--overwrite] [--eval-only] [KEY VALUE ...]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last.pth (same config required)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in OUTPUT_DIR (its outputs are deleted first)")
    if eval_only:
        parser.add_argument("--eval-only", action="store_true",
                            help="only evaluate MODEL.WEIGHTS (or OUTPUT_DIR/last.pth)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.1 (parse the command "
                             "line with parse_intermixed_args so options may follow them)")
    return parser


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE is '{name}' but CUDA is not available")
    return device


def config_identity(cfg: Config) -> Dict[str, Any]:
    """The resolved config without :data:`NON_IDENTITY_KEYS` (what a resume must match)."""
    data = to_dict(cfg)
    for key in NON_IDENTITY_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return data


def saved_config_identity(identity: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's saved :func:`config_identity` with deprecated key names read as the new
    ones (a run folder from before a rename resumes as the same run)."""
    return renamed_mapping(identity, "the checkpoint's config identity", warn=False)


def check_resumable(cfg: Config) -> None:
    """Before anything is overwritten: the ``config.yaml`` of the run being resumed must have
    the same identity as ``cfg`` (the error names the keys that differ); an old
    ``config.yaml`` with deprecated key names is read under the new ones."""
    saved = Path(cfg.OUTPUT_DIR) / "config.yaml"
    if saved.is_file():
        diff = identity_diff(config_identity(load_config(saved)), config_identity(cfg))
        if diff:
            raise CheckpointMismatchError(
                f"--resume: {saved} differs from the given config: {'; '.join(diff[:10])}")


def check_output_dir(cfg: Config, resume: bool = False, overwrite: bool = False) -> None:
    """Everything about ``OUTPUT_DIR`` that must hold before a run writes into it: no other run
    there unless ``resume`` (then its ``config.yaml`` must match, :func:`check_resumable`) or
    ``overwrite``. Writes nothing."""
    check_output_folder(cfg.OUTPUT_DIR, resume, overwrite)
    if resume:
        check_resumable(cfg)


def claim_output_dir(cfg: Config, resume: bool = False, overwrite: bool = False) -> Path:
    """After :func:`check_output_dir`: with ``overwrite`` delete the previous run's outputs,
    then create ``OUTPUT_DIR``, log to ``log.txt`` (and stdout) and write ``config.yaml``."""
    check_output_dir(cfg, resume, overwrite)
    barrier()  # under torch.distributed every rank has checked before rank 0 writes
    output_dir = Path(cfg.OUTPUT_DIR)
    removed = (on_main_process(lambda: clear_run_outputs(output_dir)) or []) if overwrite else []
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logger(output_dir)
    if removed:
        logger.warning("--overwrite: deleted the previous run's %s in %s",
                       ", ".join(p.name for p in removed), output_dir)
    logger.info("Python %s, torch %s, CUDA available: %s", platform.python_version(),
                torch.__version__, torch.cuda.is_available())
    on_main_process(lambda: save_config(cfg, output_dir / "config.yaml"))
    logger.info("Resolved config written to %s", output_dir / "config.yaml")
    return output_dir


def default_setup(cfg: Config, resume: bool = False, overwrite: bool = False) -> Path:
    """Under a launcher (torchrun, SLURM) join the process group first (only rank 0 writes);
    then :func:`claim_output_dir` and seed every generator with ``SEED``."""
    init_distributed(cfg.MODEL.DEVICE)
    output_dir = claim_output_dir(cfg, resume, overwrite)
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    return output_dir


def build_trainer(cfg: Config, model: nn.Module, step: TrainStep, iters_per_epoch: int,
                  eval_fn: Optional[Callable[[], Metrics]] = None,
                  extra_hooks: Sequence[HookBase] = (), best_dataset: Optional[str] = None,
                  meta: Optional[Mapping[str, Any]] = None, keep_best: bool = True
                  ) -> Tuple[Trainer, Checkpointer]:
    """The shared trainer for ``step`` with the standard hooks, in this order: LR schedule,
    freezing (``SOLVER.FREEZE_ITERS`` > 0), wall clock, progress (tqdm on a terminal),
    ``extra_hooks``, evaluation
    (every ``TEST.EVAL_PERIOD`` epochs and at the end; with ``keep_best`` also ``best.pth`` by
    ``best_dataset`` mAP),
    TensorBoard, checkpoint (``last.pth`` every ``SOLVER.CHECKPOINT_PERIOD`` epochs).

    The model must already be on ``MODEL.DEVICE``; ``meta`` is stored in every checkpoint.
    """
    device = resolve_device(cfg.MODEL.DEVICE)
    prepare_ranks(model, cfg.SEED)
    optimizer = build_optimizer_from_config(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer, iters_per_epoch)
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, config_identity(cfg), meta,
                                read_identity=saved_config_identity)
    hooks: List[HookBase] = [LRSchedulerHook(scheduler)]
    if cfg.SOLVER.FREEZE_ITERS > 0:
        hooks.append(FreezeHook(model, cfg.SOLVER.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS))
    hooks += [WallClockHook(), ProgressHook(enabled=sys.stderr.isatty() and is_main_process()),
              *extra_hooks]
    if eval_fn is not None:
        hooks.append(EvalHook(eval_fn, cfg.TEST.EVAL_PERIOD,
                              checkpointer if keep_best else None, best_dataset))
    hooks += [TensorBoardHook(cfg.OUTPUT_DIR), CheckpointHook(checkpointer,
                                                              cfg.SOLVER.CHECKPOINT_PERIOD)]
    trainer = Trainer(model, optimizer, step, cfg.SOLVER.MAX_EPOCH, iters_per_epoch, hooks,
                      device, cfg.SOLVER.AMP)
    return trainer, checkpointer


def resume_or_start(trainer: Trainer, checkpointer: Checkpointer, resume: bool) -> bool:
    """With ``resume``, load ``last.pth`` when it exists (its config must match); returns
    whether a checkpoint was loaded."""
    if not resume:
        return False
    if not checkpointer.exists("last.pth"):
        logger.warning("--resume: no %s yet, starting from scratch", checkpointer.path("last.pth"))
        return False
    trainer.load_state_dict(checkpointer.load("last.pth"))
    logger.info("Resumed from %s after epoch %d", checkpointer.path("last.pth"),
                trainer.start_epoch)
    return True


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


def without_initial_weights(cfg: Config) -> Config:
    """A copy of ``cfg`` that builds a model without loading ``MODEL.WEIGHTS`` or backbone
    pre-training (a full checkpoint is loaded into it next)."""
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.PRETRAIN = False
    return cfg


def load_trained_model(cfg: Config, weights: os.PathLike | str,
                       device: torch.device | str = "cpu") -> nn.Module:
    """The model of ``cfg`` with the checkpoint ``weights`` loaded strictly (every tensor must
    match), on ``device``; the number of classes comes from the checkpoint's meta, else
    ``MODEL.HEADS.NUM_CLASSES``. Training-only modules an adaptation method added (listed in
    the meta as ``training_modules``) are not loaded."""
    meta = read_checkpoint_meta(weights)
    num_classes = meta.get("num_classes") or cfg.MODEL.HEADS.NUM_CLASSES
    if not num_classes:
        raise ValueError(f"MODEL.WEIGHTS {weights} records no number of classes; "
                         "set MODEL.HEADS.NUM_CLASSES")
    model = build_model(without_initial_weights(cfg), num_classes).to(device)
    load_model_weights(model, weights, skip_modules=meta.get("training_modules", ()))
    return model


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


# What a user can cause with a command line: the project's own user errors (bad config key or
# value, unknown name, dataset layout, weight file, checkpoint mismatch, output folder), a
# missing or unreadable file (OSError) and an explicit ValueError for a bad config value. A
# plain KeyError, AttributeError, TypeError or IndexError is a bug and keeps its traceback.
USER_ERRORS = (UserError, OSError, ValueError)


def describe_user_error(err: BaseException) -> str:
    """The message of a user error; of an error re-raised from a DataLoader worker only its
    last line (the original error)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def run_tool(action: Callable[[], object]) -> int:
    """Run a command-line tool's ``action``: returns its exit code (``action``'s int result,
    else 0). A user error (:data:`USER_ERRORS`) is reported as ``error: ...`` on stderr and in
    the run's ``log.txt``, exit code 2; any other exception is a bug: its traceback goes to
    ``log.txt`` too and it propagates. Log records wait in memory until a run claims its
    output folder (:func:`uda_reid.engine.logger.setup_logger`)."""
    setup_logger()
    try:
        result = action()
    except USER_ERRORS as err:
        message = f"error: {describe_user_error(err)}"
        log_to_files(message)
        print(message, file=sys.stderr)
        return 2
    except Exception:
        log_to_files(f"error: unexpected failure (a bug)\n{traceback.format_exc()}")
        raise
    return result if isinstance(result, int) else 0


def load_cli_config(args: argparse.Namespace) -> Config:
    """The config of ``--config-file`` with the ``KEY VALUE`` overrides applied."""
    return load_config(args.config_file, args.opts)
