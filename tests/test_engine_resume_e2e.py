"""Exact resume through the real pipeline: synthetic images, PK sampler, augmentation in a
worker process, ResNet-18, Adam with warm-up, backbone freezing, evaluation between epochs."""
from pathlib import Path

import pytest
import torch

from uda_reid.config import load_config
from uda_reid.engine.flows import train
from uda_reid.engine.hooks import HookBase

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synth-market" / "bagtricks_R18.yml"


class KillAt(HookBase):
    """Simulates a crash just before global iteration ``iteration``."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise KeyboardInterrupt(f"killed before iteration {self.iteration}")


def config(data_root: Path, output_dir: Path):
    return load_config(CONFIG, [
        "DATASETS.ROOT", str(data_root), "DATASETS.SYNTH_SCALE", "tiny",
        "DATASETS.TESTS", "[synth-market]", "MODEL.DEVICE", "cpu",
        "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "INPUT.PADDING.SIZE", "1",
        "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[2]",
        "SOLVER.WARMUP_ITERS", "5", "SOLVER.FREEZE_ITERS", "2", "SOLVER.FREEZE_LAYERS",
        "[backbone]", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1",
        "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", str(output_dir)])


def test_resume_after_kill_gives_same_weights_through_the_real_pipeline(tmp_path):
    torch.set_num_threads(1)
    full = train(config(tmp_path / "data", tmp_path / "full"))

    killed_cfg = config(tmp_path / "data", tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        train(killed_cfg, extra_hooks=[KillAt(2 * 4 + 1)])  # 4 iterations per epoch
    assert torch.load(tmp_path / "killed" / "last.pth", weights_only=True)["epoch"] == 2
    assert not (tmp_path / "killed" / "results.json").exists()
    resumed = train(killed_cfg, resume=True)

    want = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    got = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert want["model"].keys() == got["model"].keys()
    for key in want["model"]:
        assert torch.equal(want["model"][key], got["model"][key]), key
    assert got["metrics"] == want["metrics"]
    assert resumed["metrics"] == full["metrics"]
    assert resumed["curves"] == full["curves"] and len(full["curves"]) == 3
