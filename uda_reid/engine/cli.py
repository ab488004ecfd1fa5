"""Command-line parsing of the train / test / export tools: the FastReID-style parser and
the config it names."""
from __future__ import annotations

import argparse

from uda_reid.config import Config, load_config


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


def load_cli_config(args: argparse.Namespace) -> Config:
    """The config of ``--config-file`` with the ``KEY VALUE`` overrides applied."""
    return load_config(args.config_file, args.opts)
