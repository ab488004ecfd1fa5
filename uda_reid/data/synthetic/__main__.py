"""``python -m uda_reid.data.synthetic --name synth-market --scale default [--seed 0]
[--version 1]``: generate a synthetic domain (or check its cache) and print its summary."""
from __future__ import annotations

import argparse
import logging
import time

from uda_reid.data.datasets import build_dataset
from uda_reid.data.synthetic.generate import ensure_domain


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a synthetic ReID domain.")
    parser.add_argument("--name", default="synth-market")
    parser.add_argument("--scale", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", type=int, default=1, help="domain version "
                        "(DATASETS.SYNTH_VERSION)")
    parser.add_argument("--root", default="data")
    parser.add_argument("--verify", action="store_true",
                        help="check the cached files' SHA-256, not only their sizes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    if args.verify:
        ensure_domain(args.root, args.name, args.scale, args.seed, args.version,
                      verify_checksums=True)
    dataset = build_dataset(args.name, args.root, synth_scale=args.scale, synth_seed=args.seed,
                            synth_version=args.version)
    print(dataset.summary())
    print(f"ready in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
