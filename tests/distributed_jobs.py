"""Runs a list of jobs in every process of a torchrun launch (used by test_distributed_e2e.py):

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_jobs.py JOBS.json

Each job is ``{"tool": "train" | "adapt", "argv": [...]}`` (the command-line tool's main) or
``{"kill_resume": CONFIG, "overrides": [...], "kill_at": N}`` (tools/train.py's training
killed before global iteration N on every rank, then resumed with ``--resume``).
"""
import json
import sys
from pathlib import Path

import torch

from test_engine_resume_e2e import KillAt
from test_train_e2e import load_tool
from uda_reid.config import load_config
from uda_reid.engine.flows import train


def run(job):
    if "tool" in job:
        rc = load_tool(job["tool"])(job["argv"])
        if rc != 0:
            raise SystemExit(f"tools/{job['tool']}.py exited with {rc}")
        return
    cfg = load_config(job["kill_resume"], job["overrides"])
    try:
        train(cfg, extra_hooks=[KillAt(job["kill_at"])])
        raise SystemExit("the run was not killed")
    except KeyboardInterrupt:
        pass
    train(cfg, resume=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for job in json.loads(Path(sys.argv[1]).read_text()):
        run(job)
