"""Training-loop throughput against the raw forward + backward + step of the same model and batch.

The loop is the one ``tools/train.py`` runs (``build_trainer``: data loading and augmentation
through the configured DataLoader, LR schedule, progress, TensorBoard and checkpoint hooks,
epoch boundaries included); the raw rate repeats one batch already in memory through
``forward_model``, the configured losses, ``zero_grad``, ``backward`` and ``optimizer.step`` in
the same process (before and after the loop; their mean is the raw rate).
``loop it/s / raw it/s`` is printed as "NN% of raw".
"""
from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

import torch

from uda_reid.benchmarks import BENCHMARKS
from uda_reid.benchmarks.blobs import machine_note
from uda_reid.benchmarks.measure import at_threads
from uda_reid.config import load_config
from uda_reid.data.loaders import build_train_loader_from_config
from uda_reid.engine.device import resolve_device
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.optim import build_optimizer_from_config
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer import SupervisedStep
from uda_reid.engine.trainer_builder import build_trainer
from uda_reid.losses import build_loss_fn
from uda_reid.models import build_model
from uda_reid.models.forward import forward_model, move_batch
from uda_reid.recipes import recipe_file

RECIPE = ("synth-market", "bagtricks_R18.yml")  # under the recipe folder
PRESETS = {
    "synth-r18": [],  # the recipe as shipped: ResNet-18 at 64 x 32, batch 32
    # ResNet-50 at the real-data size, batch 16 (8 identities x 2 images) to keep a few
    # iterations within minutes on a CPU
    "r50-256x128": ["MODEL.BACKBONE.NAME", "resnet50", "INPUT.SIZE_TRAIN", "[256, 128]",
                    "INPUT.SIZE_TEST", "[256, 128]", "SOLVER.IMS_PER_BATCH", "16",
                    "DATALOADER.NUM_INSTANCE", "2"],
}


class _LoopClock(HookBase):
    """Wall time of the timed epochs (all but the first, which warms up; from the start of the
    second epoch to the last iteration's end, so the final checkpoint, written once per run, is
    left out) and the parts of it spent on data (waiting for batches, starting each epoch's
    loader pass) and in the hooks."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.parts = {"data": 0.0, "hooks": 0.0}

    def before_epoch(self) -> None:
        if self.trainer.epoch == 1:
            self.start = time.perf_counter()

    def after_step(self) -> None:
        if self.trainer.iter + 1 == self.trainer.max_iter:
            self.end = time.perf_counter()

    def timing(self, part: str, fn: Callable) -> Callable:
        """``fn`` with its wall time added to ``parts[part]`` during the timed epochs."""
        def timed(*args: Any) -> Any:
            begin = time.perf_counter()
            try:
                return fn(*args)
            finally:
                if self.start and not self.end:
                    self.parts[part] += time.perf_counter() - begin

        return timed


def raw_rate(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
             batch: dict, iters: int, warmup: int) -> float:
    """Iterations per second of forward + losses + backward + step on one fixed batch."""
    model.train()
    start = time.perf_counter()
    for i in range(warmup + iters):
        if i == warmup:
            start = time.perf_counter()
        losses = loss_fn(forward_model(model, batch), batch["pids"])
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    return iters / (time.perf_counter() - start)


def loop_and_raw_rates(cfg, epochs: int, iters: int, raw_warmup: int
                       ) -> Tuple[float, Dict[str, float], List[float]]:
    """Iterations per second of the training loop over ``epochs`` timed epochs of ``iters``
    iterations after one warm-up epoch, the shares of their time spent on data and hooks, and
    the raw rate (``iters`` iterations on a copy of the model) measured before and after the
    loop, so that a change of the machine's load during the run shows."""
    device = resolve_device(cfg.MODEL.DEVICE)
    loader, num_classes = build_train_loader_from_config(cfg)
    model = build_model(cfg, num_classes).to(device)
    loss_fn = build_loss_fn(cfg)
    batch = move_batch(next(iter(loader)), device)
    raw_model = copy.deepcopy(model)
    raw_optimizer = build_optimizer_from_config(cfg, raw_model)
    raw = [raw_rate(raw_model, raw_optimizer, loss_fn, batch, iters, raw_warmup)]
    step = SupervisedStep(loader, loss_fn, device)
    clock = _LoopClock()
    trainer, _ = build_trainer(cfg, model, step, iters, extra_hooks=[clock])
    step.stream.next = clock.timing("data", step.stream.next)
    step.begin_epoch = clock.timing("data", step.begin_epoch)
    trainer._call = clock.timing("hooks", trainer._call)
    trainer.train()
    elapsed = clock.end - clock.start
    raw.append(raw_rate(raw_model, raw_optimizer, loss_fn, batch, iters, raw_warmup))
    shares = {part: seconds / elapsed for part, seconds in clock.parts.items()}
    return epochs * iters / elapsed, shares, raw


@BENCHMARKS.register("train")
class TrainBenchmark:
    """Training loop iterations/s as a share of the raw forward + backward + step."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--preset", choices=sorted(PRESETS), default="synth-r18")
        parser.add_argument("--iters", type=int, default=31,
                            help="iterations per epoch (the synthetic recipe's epoch: 31)")
        parser.add_argument("--epochs", type=int, default=1,
                            help="timed epochs, after one warm-up epoch")
        parser.add_argument("--raw-warmup", type=int, default=2)
        parser.add_argument("--threads", type=int, nargs="+", default=[1])
        parser.add_argument("--data-root", default="data",
                            help="DATASETS.ROOT: where the synthetic domain is (generated once)")
        parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                            help="further config overrides, e.g. DATALOADER.NUM_WORKERS 2")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        logging.getLogger("uda_reid").setLevel(logging.WARNING)
        print(f"train --preset {args.preset}: {args.epochs} timed epoch(s) of {args.iters} "
              f"iterations after 1 warm-up epoch; {machine_note()}")
        with tempfile.TemporaryDirectory() as tmp:
            opts = PRESETS[args.preset] + [
                "DATASETS.ROOT", args.data_root, "DATASETS.TESTS", "[]", "MODEL.DEVICE", "cpu",
                "OUTPUT_DIR", tmp, "SOLVER.MAX_EPOCH", str(args.epochs + 1),
                "SOLVER.ITERS_PER_EPOCH", str(args.iters), *args.opts]
            cfg = load_config(recipe_file(*RECIPE), opts)
            for num in args.threads:
                with at_threads(num):
                    seed_everything(cfg.SEED)
                    print(f"  {cfg.MODEL.BACKBONE.NAME} at "
                          f"{tuple(cfg.INPUT.SIZE_TRAIN)}, batch {cfg.SOLVER.IMS_PER_BATCH}, "
                          f"{cfg.DATALOADER.NUM_WORKERS} loader worker(s)")
                    loop, shares, raws = loop_and_raw_rates(cfg, args.epochs, args.iters,
                                                            args.raw_warmup)
                    raw = sum(raws) / len(raws)
                    print(f"  loop {loop:7.3f} it/s | raw forward+backward+step {raw:7.3f} it/s "
                          f"(before {raws[0]:.3f}, after {raws[1]:.3f}) | loop = "
                          f"{100 * loop / raw:.0f}% of raw")
                    print(f"  timed loop: {100 * shares['data']:.1f}% waiting for data "
                          f"(batches and epoch starts), {100 * shares['hooks']:.1f}% in hooks")
        return 0
