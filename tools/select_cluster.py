#!/usr/bin/env python
"""Choose a synthetic clustering recipe's k1 and DBSCAN eps on the development domains.

    python tools/select_cluster.py [--source synth-market] [--target synth-duke] \
        [--k1 10,20,30] [--eps 0.3,0.35,0.4,0.45,0.5,0.55,0.6] [--criterion ari] \
        [--adapt-top 3] [--output-dir D] [KEY VALUE ...]

Trains (or reuses, from ADAPT.SOURCE_CACHE) the recipe's stage-1 source model on the
development draw of the domains (``DATASETS.SYNTH_SEED 1`` unless given; the reporting draw 0
is refused), clusters its features of the development target's training images at every
(k1, eps) and scores the pseudo-labels against their true identities (ARI, NMI, pairwise
precision / recall / F). With ``--adapt-top N`` the N best by ``--criterion`` are also run
through the ``cluster`` recipe and scored by the adapted development-target mAP (a finished
run in the output folder is read back, so a rerun only adds what is missing). Writes
``sweep.json`` and ``sweep.md`` under the output folder (default
``output/select/<source>2<target>-s<SYNTH_SEED>``).
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path
from typing import List, Optional

from uda_reid.adapt.pipeline import (adapt_stage_config, build_adapt_config, run_adaptation,
                                     train_or_load_source)
from uda_reid.data.datasets import build_dataset_from_config
from uda_reid.data.loaders import build_test_loader
from uda_reid.data.transforms import build_transforms_from_config
from uda_reid.engine.device import resolve_device
from uda_reid.engine.logger import setup_logger
from uda_reid.engine.results import read_results
from uda_reid.engine.run_tool import run_tool
from uda_reid.engine.seed import seed_everything
from uda_reid.evaluation.extract import extract_features
from uda_reid.reproduce.selection import (CRITERIA, DEVELOPMENT_SYNTH_SEED, best_rows,
                                          require_development, sweep_clustering, sweep_markdown)
from uda_reid.utils.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger("uda_reid.select_cluster")
ADAPT_METRICS = ("mAP", "rank1")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="synth-market")
    parser.add_argument("--target", default="synth-duke")
    parser.add_argument("--config-file", default=None,
                        help="recipe (default: configs/cluster/<source>2<target>.yml)")
    parser.add_argument("--k1", default="10,20,30", help="comma-separated k-reciprocal k1")
    parser.add_argument("--eps", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6",
                        help="comma-separated DBSCAN eps")
    parser.add_argument("--criterion", choices=CRITERIA, default="ari")
    parser.add_argument("--adapt-top", type=int, default=0,
                        help="adapt with the N best (k1, eps) and report the dev-target mAP")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE")
    return parser.parse_intermixed_args(argv)


def adapt_once(cfg) -> dict:
    """``run_adaptation`` in ``cfg.OUTPUT_DIR``: a finished run's results are read back, a
    started one resumes."""
    folder = Path(cfg.OUTPUT_DIR)
    if (folder / "results.json").is_file():
        return read_results(folder / "results.json")
    return run_adaptation(cfg, resume=(folder / "last.pth").is_file())


def select(args: argparse.Namespace) -> dict:
    k1_values = [int(v) for v in args.k1.split(",")]
    eps_values = [float(v) for v in args.eps.split(",")]
    cfg = build_adapt_config(args.source, args.target, "cluster", args.config_file, None,
                             ["DATASETS.SYNTH_SEED", str(DEVELOPMENT_SYNTH_SEED), *args.opts])
    require_development(cfg)
    out = Path(args.output_dir or f"output/select/{cfg.ADAPT.SOURCE}2{cfg.ADAPT.TARGET}"
                                  f"-s{cfg.DATASETS.SYNTH_SEED}")
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(out)
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    model, source_info = train_or_load_source(cfg, device)
    setup_logger(out)
    target = build_dataset_from_config(cfg, cfg.ADAPT.TARGET)
    stage = adapt_stage_config(cfg)
    loader, _ = build_test_loader(target.train, [], build_transforms_from_config(stage, False),
                                  stage.TEST.IMS_PER_BATCH, stage.DATALOADER.NUM_WORKERS)
    features = extract_features(model, loader, stage.TEST.FLIP, device)[0]
    rows = sweep_clustering(features, [s[1] for s in target.train], k1_values, eps_values,
                            cfg.ADAPT.CLUSTER.K2, cfg.ADAPT.CLUSTER.MIN_SAMPLES)
    report = {"source": cfg.ADAPT.SOURCE, "target": cfg.ADAPT.TARGET,
              "synth_seed": cfg.DATASETS.SYNTH_SEED, "seed": cfg.SEED,
              "source_model": source_info["cache"], "criterion": args.criterion, "rows": rows,
              "adapted": []}
    for row in best_rows(rows, args.criterion, args.adapt_top):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.ADAPT.CLUSTER.K1 = row["k1"]
        run_cfg.ADAPT.CLUSTER.EPS = (row["eps"],)
        run_cfg.OUTPUT_DIR = str(out / "adapt" / f"k1_{row['k1']}_eps_{row['eps']:.2f}")
        logger.info("Adapting with k1 %d, eps %.2f in %s", row["k1"], row["eps"],
                    run_cfg.OUTPUT_DIR)
        results = adapt_once(run_cfg)
        setup_logger(out)
        direct = results["stages"][0]["metrics"][cfg.ADAPT.TARGET]
        adapted = results["metrics"][cfg.ADAPT.TARGET]
        report["adapted"].append({"k1": row["k1"], "eps": row["eps"],
                                  **{f"direct_{k}": direct[k] for k in ADAPT_METRICS},
                                  **{k: adapted[k] for k in ADAPT_METRICS}})
    text = sweep_markdown(rows)
    if report["adapted"]:
        text += ("\nAdapted with the `cluster` recipe (development target, %):\n\n"
                 "| k1 | eps | direct mAP | adapted mAP | adapted rank-1 |\n|---|---|---|---|---|\n")
        text += "".join(f"| {a['k1']} | {a['eps']:.2f} | {100 * a['direct_mAP']:.1f} | "
                        f"{100 * a['mAP']:.1f} | {100 * a['rank1']:.1f} |\n"
                        for a in report["adapted"])
    atomic_write_json(out / "sweep.json", report)
    atomic_write_text(out / "sweep.md", text)
    print(text)
    logger.info("Written %s and %s", out / "sweep.json", out / "sweep.md")
    return report


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: select(args))


if __name__ == "__main__":
    sys.exit(main())
