"""``python -m uda_reid.data.synthetic --name synth-market --scale default [--seed 0]``."""
from __future__ import annotations

import argparse
import logging
import time

from uda_reid.data.datasets import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a synthetic ReID domain.")
    parser.add_argument("--name", default="synth-market")
    parser.add_argument("--scale", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    dataset = build_dataset(args.name, args.root, synth_scale=args.scale, synth_seed=args.seed)
    print(dataset.summary())
    print(f"ready in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
