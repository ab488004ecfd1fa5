"""Export a trained model's test-time features: ``python tools/export.py --config-file F
MODEL.WEIGHTS ckpt.pth [--formats onnx torchscript] [--output DIR] [--dataset NAME]
[--no-parity] [--atol 1e-4]``.

Writes ``model.onnx`` (dynamic batch axis) and ``model.torchscript.pt`` under ``--output``
(default ``OUTPUT_DIR/export``) with ``export_report.json``, and prints the parity check: the
largest absolute difference between the exported and the PyTorch features of the test set
``--dataset`` (default: the first of ``DATASETS.TESTS``) and the mAP / rank-1 from each. Exit
status 1 when a difference exceeds ``--atol``."""
from __future__ import annotations

import sys
from pathlib import Path

from uda_reid.engine.cli import default_argument_parser, load_cli_config
from uda_reid.engine.logger import setup_logger
from uda_reid.engine.run_tool import run_tool
from uda_reid.export import FORMATS, export_model, format_parity, parity_failures


def main(argv: list[str] | None = None) -> int:
    parser = default_argument_parser(__doc__, eval_only=False)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--output", default="", metavar="DIR",
                        help="output folder (default: OUTPUT_DIR/export)")
    parser.add_argument("--dataset", default="", help="test set of the parity check "
                        "(default: the first of DATASETS.TESTS)")
    parser.add_argument("--no-parity", action="store_true", help="export without the check")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest feature difference accepted (default 1e-4)")
    args = parser.parse_intermixed_args(argv)
    failed = []

    def run() -> None:
        cfg = load_cli_config(args)
        output = Path(args.output or Path(cfg.OUTPUT_DIR) / "export")
        setup_logger(output)
        dataset = None if args.no_parity else (args.dataset or cfg.DATASETS.TESTS[0])
        report = export_model(cfg, args.formats, output, dataset)
        for fmt, path in report["files"].items():
            print(f"{fmt}: {path}")
        if "parity" in report:
            print(format_parity(report["parity"]))
            failed.extend(parity_failures(report["parity"], args.atol))
        print(f"Report: {output / 'export_report.json'}")

    status = run_tool(run)
    for line in failed:
        print(f"parity check failed: {line}", file=sys.stderr)
    return status or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
