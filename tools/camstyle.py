"""CamStyle: train a camera StarGAN, generate camera-style images, verify them, evaluate.

  python tools/camstyle.py train --dataset duke [--config-file F] [--output-dir D] [--resume]
                                 [KEY VALUE ...]
  python tools/camstyle.py generate --dataset duke [--checkpoint C] [--shard i/n] [--batch-size B]
  python tools/camstyle.py verify --dataset duke
  python tools/camstyle.py evaluate --dataset synth-duke [--checkpoint C] [--output results.json]
                                    [CAMSTYLE.EVAL.EMBEDDING_WEIGHTS reid_run/last.pth]

Without --config-file, configs/camstyle/<dataset>.yml is used when it exists; without
--checkpoint, the train run's OUTPUT_DIR/last.pth.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# This script shares its name with the ``camstyle`` package; drop its own folder from the path
# so that ``import camstyle`` finds the package, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from camstyle import jobs  # noqa: E402
from camstyle.generate import parse_shard  # noqa: E402


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name or alias (duke, market...)")
    parser.add_argument("--config-file", default=None, help="YAML config (default: "
                        "configs/camstyle/<dataset>.yml)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the camera StarGAN")
    train.add_argument("--output-dir", default=None, help="overrides OUTPUT_DIR")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pth")
    generate = sub.add_parser("generate", help="write <root>/bounding_box_train_camstyle images")
    generate.add_argument("--checkpoint", default=None,
                          help="a train run's last.pth (default: OUTPUT_DIR/last.pth)")
    generate.add_argument("--shard", default="0/1", help="i/n: this worker's part (i from 0)")
    generate.add_argument("--batch-size", type=int, default=None,
                          help="source images per batch (default CAMSTYLE.GEN_BATCH_SIZE)")
    verify = sub.add_parser("verify", help="report missing, extra and unreadable files")
    verify.add_argument("--no-decode", action="store_true", help="skip decoding every file")
    evaluate = sub.add_parser("evaluate", help="camera-transfer and identity-keeping check")
    evaluate.add_argument("--checkpoint", default=None,
                          help="a train run's last.pth (default: OUTPUT_DIR/last.pth)")
    evaluate.add_argument("--output", default=None, help="JSON file (default: beside checkpoint)")
    for p in (train, generate, verify, evaluate):
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        _common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = jobs.load_camstyle_config(args.dataset, args.config_file, args.opts)
    progress = not args.quiet
    checkpoint = str(getattr(args, "checkpoint", None) or Path(cfg.OUTPUT_DIR) / "last.pth")
    if args.command == "train":
        if args.output_dir:
            cfg.OUTPUT_DIR = args.output_dir
        print(json.dumps(jobs.train(cfg, args.dataset, resume=args.resume, progress=progress),
                         indent=2))
        return 0
    if args.command == "generate":
        print(json.dumps(jobs.generate(cfg, args.dataset, checkpoint, parse_shard(args.shard),
                                       args.batch_size, progress=progress), indent=2))
        return 0
    if args.command == "verify":
        report = jobs.verify(cfg, args.dataset, decode=not args.no_decode)
        print(report.summary())
        return 0 if report.ok else 1
    output = Path(args.output or Path(checkpoint).with_name("camstyle_eval.json"))
    print(json.dumps(jobs.evaluate(cfg, args.dataset, checkpoint, output), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
