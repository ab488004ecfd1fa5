"""Evaluate a checkpoint: ``python tools/test.py --config-file F MODEL.WEIGHTS ckpt.pth
[DATASETS.TESTS "('name',)"] [--vis N] [--overwrite]``. Metrics are logged and written to
OUTPUT_DIR/test_metrics.json (an existing one is replaced only with ``--overwrite``); ``--vis N``
also draws N query rank lists and the ROC curve."""
from __future__ import annotations

import sys

from uda_reid.engine.cli import default_argument_parser, load_cli_config
from uda_reid.engine.flows import test
from uda_reid.engine.run_tool import run_tool


def main(argv: list[str] | None = None) -> int:
    parser = default_argument_parser(__doc__, eval_only=False)
    parser.add_argument("--vis", type=int, default=0, metavar="N",
                        help="write rank-list grids of N queries and a ROC plot")
    args = parser.parse_intermixed_args(argv)
    if args.vis < 0:
        parser.error(f"--vis must be >= 0, got {args.vis}")
    return run_tool(lambda: test(load_cli_config(args), vis_count=args.vis,
                                 overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
