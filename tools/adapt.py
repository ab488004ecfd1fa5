#!/usr/bin/env python
"""Domain adaptation: train (or reuse) the source model, then adapt it to the target.

    python tools/adapt.py --source synth-market --target synth-duke --method ecn \
        [--config-file configs/ecn/synth-market2synth-duke.yml] [--output-dir D] \
        [--resume | --overwrite] \
        [KEY VALUE ...]
    python tools/adapt.py --source none --target synth-duke --method cluster_contrast \
        [MODEL.WEIGHTS start.pth] [KEY VALUE ...]      # source-free / fully unsupervised
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from uda_reid.adapt.pipeline import build_adapt_config, run_adaptation
from uda_reid.engine.run_tool import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="source dataset (default: ADAPT.SOURCE); 'none': no "
                                         "source stage, adapt the model as MODEL.WEIGHTS / the "
                                         "backbone's pre-training gives it (source-free)")
    parser.add_argument("--target", help="target dataset (default: ADAPT.TARGET)")
    parser.add_argument("--method", help="adaptation method, e.g. direct, ecn "
                                         "(default: ADAPT.METHOD)")
    parser.add_argument("--config-file", default=None, help="YAML config")
    parser.add_argument("--output-dir", default=None, help="output folder (OUTPUT_DIR)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run from OUTPUT_DIR/last.pth")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in OUTPUT_DIR (its outputs are deleted first)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. ADAPT.ECN.CAMSTYLE False")
    return parser.parse_intermixed_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run_adaptation(
        build_adapt_config(args.source, args.target, args.method, args.config_file,
                           args.output_dir, args.opts), resume=args.resume,
        overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
