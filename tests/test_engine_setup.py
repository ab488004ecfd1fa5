"""Run set-up: config identity, resume checks, device choice, the standard hook stack."""
import pytest
import torch
from torch import nn

from uda_reid.config import get_default_config, save_config
from uda_reid.engine.checkpoint import CheckpointMismatchError
from uda_reid.engine.device import resolve_device
from uda_reid.engine.freeze import FreezeHook
from uda_reid.engine.hooks import (CheckpointHook, EvalHook, LRSchedulerHook,
                                   ProgressHook, TensorBoardHook, WallClockHook)
from uda_reid.engine.output_dir import check_resumable, config_identity, default_setup
from uda_reid.engine.trainer import TrainStep
from uda_reid.engine.trainer_builder import build_trainer


def test_identity_ignores_output_dir_and_device_only():
    a, b = get_default_config(), get_default_config()
    b.OUTPUT_DIR, b.MODEL.DEVICE = "elsewhere", "cpu"
    assert config_identity(a) == config_identity(b)
    b.SOLVER.BASE_LR = 0.1
    assert config_identity(a) != config_identity(b)
    assert "OUTPUT_DIR" not in config_identity(a) and "DEVICE" not in config_identity(a)["MODEL"]


def test_resume_with_changed_config_fails_before_overwriting_config_yaml(tmp_path):
    cfg = get_default_config()
    cfg.OUTPUT_DIR = str(tmp_path)
    save_config(cfg, tmp_path / "config.yaml")
    before = (tmp_path / "config.yaml").read_text()
    cfg.SOLVER.MAX_EPOCH = 7
    with pytest.raises(CheckpointMismatchError, match="SOLVER.MAX_EPOCH: 120 -> 7"):
        default_setup(cfg, resume=True)
    assert (tmp_path / "config.yaml").read_text() == before
    cfg.SOLVER.MAX_EPOCH = 120
    check_resumable(cfg)


def test_default_setup_writes_config_and_log_and_seeds(tmp_path):
    cfg = get_default_config()
    cfg.OUTPUT_DIR, cfg.SEED = str(tmp_path / "run"), 5
    default_setup(cfg)
    first = torch.rand(3)
    default_setup(cfg, resume=True)  # the folder now holds this run: continue it
    assert torch.equal(first, torch.rand(3))
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert "torch" in (tmp_path / "run" / "log.txt").read_text()


def test_explicit_cuda_without_cuda_is_an_error():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="MODEL.DEVICE"):
            resolve_device("cuda")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)


class Step(TrainStep):
    def run(self, model):
        return {"loss": model.head(model.backbone(torch.ones(1, 2))).sum()}


def test_standard_hooks_in_order_with_extra_hooks_before_evaluation(tmp_path):
    cfg = get_default_config()
    cfg.OUTPUT_DIR, cfg.MODEL.DEVICE = str(tmp_path), "cpu"
    cfg.SOLVER.FREEZE_ITERS, cfg.SOLVER.FREEZE_LAYERS = 5, ("backbone",)
    extra = ProgressHook(enabled=False)
    trainer, ckpt = build_trainer(cfg, Net(), Step(), 10, eval_fn=lambda: {},
                                  extra_hooks=[extra], meta={"num_classes": 2})
    kinds = [type(h) for h in trainer.hooks]
    assert kinds == [LRSchedulerHook, FreezeHook, WallClockHook, ProgressHook, ProgressHook,
                     EvalHook, TensorBoardHook, CheckpointHook]
    assert trainer.hooks[4] is extra
    assert trainer.max_epoch == cfg.SOLVER.MAX_EPOCH and ckpt.meta == {"num_classes": 2}
    assert isinstance(trainer.optimizer, torch.optim.Adam)


def test_logger_writes_to_the_stdout_of_the_moment_and_to_log_txt(tmp_path, monkeypatch):
    import io

    from uda_reid.engine.logger import setup_logger

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", first)
    log = setup_logger(tmp_path, name="uda_reid.test_logger")
    log.info("one")
    first.close()  # e.g. a test runner's capture stream, gone after its test
    monkeypatch.setattr("sys.stdout", second)
    log.info("two")
    assert "two" in second.getvalue() and "one" not in second.getvalue()
    assert [line.split("] ")[-1] for line in (tmp_path / "log.txt").read_text().splitlines()] \
        == ["one", "two"]
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
