"""Source-supervised training: ``python tools/train.py --config-file F [--resume | --overwrite]
[--eval-only] [KEY VALUE ...]``. Outputs (config.yaml, log.txt, TensorBoard events, last.pth,
best.pth, results.json) go to OUTPUT_DIR, which must not hold another run unless ``--resume``
continues it or ``--overwrite`` replaces it."""
from __future__ import annotations

import sys
from pathlib import Path

from uda_reid.engine.cli import default_argument_parser, load_cli_config
from uda_reid.engine.flows import test, train
from uda_reid.engine.run_tool import run_tool


def main(argv: list[str] | None = None) -> int:
    args = default_argument_parser(__doc__).parse_intermixed_args(argv)

    def run() -> None:
        cfg = load_cli_config(args)
        if not args.eval_only:
            train(cfg, resume=args.resume, overwrite=args.overwrite)
            return
        if not cfg.MODEL.WEIGHTS:
            last = Path(cfg.OUTPUT_DIR) / "last.pth"
            if not last.is_file():
                raise FileNotFoundError(f"--eval-only needs MODEL.WEIGHTS or {last}")
            cfg.MODEL.WEIGHTS = str(last)
        test(cfg, overwrite=args.overwrite)

    return run_tool(run)


if __name__ == "__main__":
    sys.exit(main())
