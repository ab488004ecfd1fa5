#!/usr/bin/env python
"""How many images a global colour shift moves into another camera (camstyle.colour_shift).

    python tools/colour_shift.py --dataset synth-duke [--output F] [DATASETS.SYNTH_VERSION 2]
        [CAMSTYLE.EVAL.EPOCHS 10 CAMSTYLE.EVAL.MAX_QUERIES 300 SEED 0 ...]

A camera classifier (CAMSTYLE.EVAL.CLASSIFIER_SIZE, EPOCHS; SEED) is trained on the training
images; MAX_QUERIES query images spread over the list are shifted into every other camera.
Prints the target-camera rate and writes the full result as JSON (default
``output/colour_shift/<dataset>-v<SYNTH_VERSION>-s<SYNTH_SEED>.json``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

# tools/camstyle.py would shadow the ``camstyle`` package: drop this folder from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from camstyle.colour_shift import colour_shift_rate  # noqa: E402
from uda_reid.config import load_config  # noqa: E402
from uda_reid.data.datasets import DATASETS, build_dataset_from_config  # noqa: E402
from uda_reid.engine.run_tool import run_tool  # noqa: E402
from uda_reid.utils.atomic import atomic_write_json  # noqa: E402


def measure(args: argparse.Namespace) -> int:
    cfg = load_config(None, args.opts)
    dataset = build_dataset_from_config(cfg, DATASETS.canonical(args.dataset))
    ev = cfg.CAMSTYLE.EVAL
    result = {"dataset": dataset.name, "root": dataset.root,
              "synth_version": cfg.DATASETS.SYNTH_VERSION, "synth_seed": cfg.DATASETS.SYNTH_SEED,
              **colour_shift_rate(dataset.train, dataset.query, dataset.num_cameras,
                                  classifier_size=ev.CLASSIFIER_SIZE, epochs=ev.EPOCHS,
                                  max_probes=ev.MAX_QUERIES, seed=cfg.SEED)}
    output = Path(args.output or f"output/colour_shift/{dataset.name}-v"
                  f"{cfg.DATASETS.SYNTH_VERSION}-s{cfg.DATASETS.SYNTH_SEED}.json")
    atomic_write_json(output, result)
    print(json.dumps({k: result[k] for k in ("dataset", "synth_version", "target_camera_rate",
                                             "source_camera_rate", "chance_camera")}))
    print(f"classifier accuracy on the unshifted probes: "
          f"{result['classifier']['probe_accuracy']:.3f}; written to {output}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name or alias")
    parser.add_argument("--output", default=None, help="result JSON path")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE")
    args = parser.parse_intermixed_args(argv)
    return run_tool(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
