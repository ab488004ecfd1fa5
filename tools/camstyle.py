"""CamStyle: train a camera GAN (StarGAN, or a CycleGAN per camera pair with CAMSTYLE.MODEL
cyclegan), generate camera-style images, verify them, evaluate.

  python tools/camstyle.py train --dataset duke [--config-file F] [--output-dir D]
                                 [--resume | --overwrite] [--shard i/n] [KEY VALUE ...]
  python tools/camstyle.py generate --dataset duke [--checkpoint C] [--shard i/n] [--batch-size B]
  python tools/camstyle.py verify --dataset duke
  python tools/camstyle.py evaluate --dataset synth-duke [--checkpoint C [--checkpoint C2]]
                                    [--output results.json]
                                    [CAMSTYLE.EVAL.EMBEDDING_WEIGHTS reid_run/last.pth]

Without --config-file, configs/camstyle/<dataset>.yml is used when it exists; without
--checkpoint, the train run's OUTPUT_DIR/last.pth (StarGAN) or OUTPUT_DIR (CycleGAN: the folder
holding pairs/). ``train --shard i/n`` trains every n-th camera pair (CycleGAN); ``generate
--shard`` splits the images (StarGAN) or the (pair, image) units (CycleGAN). ``evaluate`` with
several --checkpoint (StarGAN last.pth files or CycleGAN folders) scores them side by side on
the same checks. Options may come before or after the KEY VALUE overrides.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

# This script shares its name with the ``camstyle`` package; drop its own folder from the path
# so that ``import camstyle`` finds the package, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from camstyle import jobs  # noqa: E402
from camstyle.generate import parse_shard  # noqa: E402
from uda_reid.engine.run_tool import run_tool  # noqa: E402


def build_parsers() -> Dict[str, argparse.ArgumentParser]:
    """One parser per command; each reads its options anywhere among the ``KEY VALUE`` pairs."""
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"camstyle.py {name}", description=help_text)
        parser.add_argument("--dataset", required=True,
                            help="dataset name or alias (duke, market...)")
        parser.add_argument("--config-file", default=None, help="YAML config (default: "
                            "configs/camstyle/<dataset>.yml)")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                            help="config overrides (options may follow them)")
        return parser

    train = command("train", "train the camera GAN (CAMSTYLE.MODEL)")
    train.add_argument("--output-dir", default=None, help="overrides OUTPUT_DIR")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUTPUT_DIR/last.pth (CycleGAN: each pair from its "
                       "last.pth, pairs not started yet from scratch)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the train run in OUTPUT_DIR (its outputs are deleted first)")
    train.add_argument("--shard", default="0/1",
                       help="i/n: train every n-th camera pair from the i-th (CycleGAN)")
    generate = command("generate", "write <root>/bounding_box_train_camstyle images")
    generate.add_argument("--checkpoint", default=None,
                          help="a StarGAN last.pth or CycleGAN run folder (default: the train "
                          "run's, in OUTPUT_DIR)")
    generate.add_argument("--shard", default="0/1", help="i/n: this worker's part (i from 0)")
    generate.add_argument("--batch-size", type=int, default=None,
                          help="source images per batch (default CAMSTYLE.GEN_BATCH_SIZE)")
    verify = command("verify", "report missing, extra and unreadable files")
    verify.add_argument("--no-decode", action="store_true", help="skip decoding every file")
    evaluate = command("evaluate", "camera-transfer and identity-keeping check")
    evaluate.add_argument("--checkpoint", action="append", default=None,
                          help="a StarGAN last.pth or CycleGAN run folder (default: the train "
                          "run's); repeat to compare several side by side")
    evaluate.add_argument("--output", default=None,
                          help="JSON file (default: camstyle_eval.json in the first checkpoint's "
                          "run folder)")
    return {"train": train, "generate": generate, "verify": verify, "evaluate": evaluate}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``COMMAND [options and KEY VALUE pairs in any order]``."""
    parsers = build_parsers()
    top = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("command", choices=list(parsers))
    top.add_argument("rest", nargs=argparse.REMAINDER, help="the command's arguments")
    first = top.parse_args(argv)
    args = parsers[first.command].parse_intermixed_args(first.rest)
    args.command = first.command
    return args


def run(args: argparse.Namespace) -> int:
    cfg = jobs.load_camstyle_config(args.dataset, args.config_file, args.opts)
    progress = not args.quiet
    if args.command == "train":
        if args.output_dir:
            cfg.OUTPUT_DIR = args.output_dir
        print(json.dumps(jobs.train(cfg, args.dataset, resume=args.resume,
                                    overwrite=args.overwrite, progress=progress,
                                    shard=parse_shard(args.shard)), indent=2))
        return 0
    if args.command == "generate":
        checkpoint = str(args.checkpoint or jobs.default_checkpoint(cfg))
        print(json.dumps(jobs.generate(cfg, args.dataset, checkpoint, parse_shard(args.shard),
                                       args.batch_size, progress=progress), indent=2))
        return 0
    if args.command == "verify":
        report = jobs.verify(cfg, args.dataset, decode=not args.no_decode)
        print(report.summary())
        return 0 if report.ok else 1
    checkpoints = args.checkpoint or [str(jobs.default_checkpoint(cfg))]
    first = Path(checkpoints[0])
    output = Path(args.output or (first if first.is_dir() else first.parent) / "camstyle_eval.json")
    print(json.dumps(jobs.evaluate(cfg, args.dataset, checkpoints, output), indent=2))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
