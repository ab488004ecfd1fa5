"""Shipped recipes: FastReID's BoT / SBS values, and every config builds a model, its losses,
optimiser and schedule (so a renamed component or key breaks a test, not a user's run)."""
from pathlib import Path

import pytest
import torch

from uda_reid.config import load_config
from uda_reid.engine.lr_schedule import build_lr_scheduler
from uda_reid.engine.optim import build_optimizer_from_config
from uda_reid.losses import build_loss_fn
from uda_reid.models import build_model
from uda_reid.models.forward import forward_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENGINE_CONFIGS = sorted(p for folder in ("Market1501", "DukeMTMC", "MSMT17", "synth-market",
                                         "synth-duke", "synth-msmt")
                        for p in (CONFIGS / folder).glob("*.yml"))


def test_bagtricks_has_fastreid_bot_values():
    cfg = load_config(CONFIGS / "Market1501" / "bagtricks_R50.yml")
    m, s = cfg.MODEL, cfg.SOLVER
    assert (m.BACKBONE.NAME, m.BACKBONE.LAST_STRIDE, m.POOLING.NAME, m.HEADS.NAME,
            m.HEADS.NECK_FEAT, m.HEADS.CLS_LAYER) == ("resnet50", 1, "avg", "bnneck", "before",
                                                      "linear")
    assert m.LOSSES.NAME == ("CrossEntropyLoss", "TripletLoss")
    assert (m.LOSSES.CE.EPSILON, m.LOSSES.TRI.MARGIN, m.LOSSES.TRI.HARD_MINING) == (0.1, 0.3, True)
    assert cfg.INPUT.SIZE_TRAIN == (256, 128) and cfg.INPUT.REA.ENABLED
    assert (s.OPT, s.BASE_LR, s.WEIGHT_DECAY, s.IMS_PER_BATCH, s.MAX_EPOCH) == (
        "Adam", 3.5e-4, 5e-4, 64, 120)
    assert (s.SCHED, s.STEPS, s.GAMMA, s.WARMUP_FACTOR, s.WARMUP_ITERS) == (
        "MultiStepLR", (40, 90), 0.1, 0.1, 2000)
    assert cfg.DATALOADER.NUM_INSTANCE == 4 and s.ITERS_PER_EPOCH == 12936 // 64
    assert cfg.DATASETS.NAMES == cfg.DATASETS.TESTS == ("market1501",)


def test_sbs_has_fastreid_stronger_baseline_values():
    cfg = load_config(CONFIGS / "MSMT17" / "sbs_R101-ibn.yml")
    m, s = cfg.MODEL, cfg.SOLVER
    assert (m.BACKBONE.NAME, m.BACKBONE.WITH_IBN, m.BACKBONE.WITH_NL) == ("resnet101", True, True)
    assert (m.POOLING.NAME, m.HEADS.NECK_FEAT, m.HEADS.CLS_LAYER, m.HEADS.SCALE,
            m.HEADS.MARGIN) == ("gem", "after", "circle", 64.0, 0.35)
    assert m.LOSSES.TRI.MARGIN == 0.0
    assert cfg.INPUT.SIZE_TRAIN == (384, 128)
    assert cfg.INPUT.AUTOAUG.ENABLED and cfg.INPUT.AUTOAUG.PROB == 0.1
    assert cfg.DATALOADER.NUM_INSTANCE == 16
    assert (s.SCHED, s.MAX_EPOCH, s.DELAY_EPOCHS, s.ETA_MIN_LR, s.WARMUP_ITERS) == (
        "CosineAnnealingLR", 60, 30, 7e-7, 2000)
    assert (s.FREEZE_ITERS, s.FREEZE_LAYERS, s.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD) == (
        1000, ("backbone",), 20, 10)


@pytest.mark.parametrize("path", [p for p in ENGINE_CONFIGS if p.parent.name in
                                  ("Market1501", "synth-market", "synth-duke", "synth-msmt")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_builds_a_trainable_model(path):
    torch.manual_seed(0)
    cfg = load_config(path, ["MODEL.BACKBONE.PRETRAIN", "False"])
    model = build_model(cfg, num_classes=4)
    optimizer = build_optimizer_from_config(cfg, model)
    build_lr_scheduler(cfg, optimizer, iters_per_epoch=cfg.SOLVER.ITERS_PER_EPOCH or 31)
    pids = torch.tensor([0, 0, 1, 1])
    batch = {"images": torch.randn(4, 3, 64, 32), "pids": pids, "camids": torch.zeros(4).long()}
    losses = build_loss_fn(cfg)(forward_model(model.train(), batch), pids)
    assert set(losses) == {"loss_cls", "loss_triplet"}
    sum(losses.values()).backward()
    assert model.head.classifier.weight.grad is not None


@pytest.mark.parametrize("path", ENGINE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.OUTPUT_DIR.startswith("output/")
