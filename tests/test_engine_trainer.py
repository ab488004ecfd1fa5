"""Trainer loop, hooks, freezing and exact resume on a tiny CPU model."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uda_reid.engine.checkpoint import CheckpointMismatchError, Checkpointer
from uda_reid.engine.events import EpochMeans
from uda_reid.engine.freeze import FreezeHook, freeze_modules
from uda_reid.engine.hooks import (CheckpointHook, EvalHook, HookBase, LRSchedulerHook,
                                   ProgressHook, TensorBoardHook)
from uda_reid.engine.lr_schedule import WarmupLRScheduler
from uda_reid.engine.optim import build_optimizer
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer import SupervisedStep, Trainer, TrainStep
from uda_reid.evaluation.extract import extract_features
from uda_reid.utils.errors import UserError

NUM_CLASSES = 4


class ToyImages(Dataset):
    """Images (3, 16, 8) whose mean colour depends on the identity, plus noise."""

    def __init__(self, n: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.pids = torch.arange(n) % NUM_CLASSES
        self.images = torch.randn(n, 3, 16, 8, generator=g) + self.pids.view(-1, 1, 1, 1) * 0.5

    def __len__(self):
        return len(self.pids)

    def __getitem__(self, i):
        image = self.images[i] + 0.1 * torch.randn(3, 16, 8)  # augmentation noise uses the RNG
        return {"images": image, "pids": self.pids[i], "camids": torch.tensor(i % 2),
                "indexes": torch.tensor(i), "paths": f"img_{i}.jpg"}


class ToyReID(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8, NUM_CLASSES))

    def forward(self, images):
        feats = self.backbone(images).mean(dim=(2, 3))
        if not self.training:
            return feats
        return {"logits": self.head(feats), "features": feats}


def ce_loss(outputs, pids):
    return {"loss_ce": F.cross_entropy(outputs["logits"], pids)}


class KillAt(HookBase):
    """Simulates a crash at a given iteration."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise KeyboardInterrupt(f"killed at {self.iteration}")


def build(out_dir: Path, max_epoch: int = 4, extra_hooks=(), identity=None, freeze_iters=3):
    model = ToyReID()
    opt = build_optimizer(model, "Adam", 0.01, 5e-4, 5e-4, 5e-4, bias_lr_factor=2.0)
    loader = DataLoader(ToyImages(), batch_size=8, shuffle=True)
    sched = WarmupLRScheduler(opt, iters_per_epoch=len(loader), max_epoch=max_epoch,
                              steps=(2,), warmup_iters=5)
    test_loader = DataLoader(ToyImages(16, seed=1), batch_size=8)
    ckpt = Checkpointer(out_dir, identity or {"SEED": 0, "SOLVER": {"BASE_LR": 0.01}})

    def eval_fn():
        feats, pids, _, _ = extract_features(model, test_loader, flip=True)
        nearest = torch.cdist(feats, feats).fill_diagonal_(float("inf")).argmin(1)
        return {"toy": {"mAP": float((pids[nearest] == pids).float().mean()), "rank1": 0.0}}

    hooks = [LRSchedulerHook(sched), FreezeHook(model, ["backbone"], freeze_iters),
             ProgressHook(enabled=False), EvalHook(eval_fn, 1, ckpt), *extra_hooks,
             TensorBoardHook(out_dir, period=2), CheckpointHook(ckpt, 1)]
    trainer = Trainer(model, opt, SupervisedStep(loader, ce_loss), max_epoch, len(loader), hooks)
    return trainer, ckpt


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_resume_after_kill_gives_bit_identical_weights(tmp_path):
    seed_everything(0)
    full, _ = build(tmp_path / "full")
    full.train()

    seed_everything(0)
    killed, _ = build(tmp_path / "run", extra_hooks=[KillAt(2 * 4 + 1)])  # epoch 3, 2nd step
    with pytest.raises(KeyboardInterrupt):
        killed.train()

    seed_everything(123)  # a fresh process: different RNG state and initial weights
    resumed, ckpt = build(tmp_path / "run")
    resumed.load_state_dict(ckpt.load("last.pth"))
    assert resumed.start_epoch == 2 and resumed.iter == 8
    resumed.train()

    assert_same_weights(full.model, resumed.model)
    assert resumed.metrics.keys() == full.metrics.keys() == {1, 2, 3, 4}
    assert resumed.metrics == full.metrics
    assert not torch.equal(killed.model.backbone[0].weight, full.model.backbone[0].weight)


def test_resume_with_a_different_config_is_an_error(tmp_path):
    seed_everything(0)
    trainer, _ = build(tmp_path, max_epoch=1)
    trainer.train()
    _, other = build(tmp_path, identity={"SEED": 0, "SOLVER": {"BASE_LR": 0.02}})
    with pytest.raises(CheckpointMismatchError, match=r"SOLVER.BASE_LR: 0.01 -> 0.02"):
        other.load("last.pth")


class Recorder(HookBase):
    def __init__(self):
        self.snapshots = []

    def after_step(self):
        model = self.trainer.model
        self.snapshots.append({
            "backbone": {k: v.clone() for k, v in model.backbone.state_dict().items()},
            "head": {k: v.clone() for k, v in model.head.state_dict().items()},
            "bn_training": model.backbone[1].training,
        })


def changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_freezing_keeps_backbone_and_bn_stats_fixed_then_releases(tmp_path):
    seed_everything(0)
    recorder = Recorder()
    trainer, _ = build(tmp_path, max_epoch=2, extra_hooks=[recorder], freeze_iters=3)
    initial_backbone = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    initial_head = {k: v.clone() for k, v in trainer.model.head.state_dict().items()}
    trainer.train()
    snaps = recorder.snapshots
    for i in range(3):  # iterations 0, 1, 2 are frozen: weights and running stats unchanged
        assert not changed(initial_backbone, snaps[i]["backbone"]), i
        assert snaps[i]["bn_training"] is False
    assert changed(initial_head, snaps[0]["head"])
    assert changed(snaps[2]["backbone"], snaps[3]["backbone"])
    assert snaps[3]["bn_training"] is True
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_bad_freeze_layer_is_named():
    with pytest.raises(ValueError, match="FREEZE_LAYERS.*'neck'.*backbone, head"):
        FreezeHook(ToyReID(), ["neck"], 10)
    with pytest.raises(UserError, match="ADAPT.ECN.FROZEN.*'neck'.*backbone, head"):
        freeze_modules(ToyReID(), ["neck"])


def test_epoch_means_by_hand():
    means = EpochMeans()
    means.add({"total": 1.0, "ce": 0.5})
    means.add({"total": 2.0, "ce": 0.25, "late": 4.0})
    assert means.means() == {"total": 1.5, "ce": 0.375, "late": 2.0}
    means.reset()
    means.add({"total": 3.0})
    assert means.means() == {"total": 3.0}


def test_temporary_and_permanent_freezing_select_the_same_parameters():
    model = ToyReID()
    hook = FreezeHook(model, ["backbone", "head"], 10)
    expected = [p for _, p in model.backbone.named_parameters()] + \
        [p for _, p in model.head.named_parameters()]
    assert [id(p) for p in hook.params] == [id(p) for p in expected]
    names = freeze_modules(model, ["head", "backbone"])
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert not any(p.requires_grad for p in model.parameters())


class OrderHook(HookBase):
    def __init__(self, log):
        self.log = log

    def before_train(self):
        self.log.append("before_train")

    def before_epoch(self):
        self.log.append(f"before_epoch {self.trainer.epoch}")

    def before_step(self):
        self.log.append(f"before_step {self.trainer.iter}")

    def after_step(self):
        self.log.append(f"after_step {self.trainer.iter}")

    def after_epoch(self):
        self.log.append(f"after_epoch {self.trainer.epoch}")

    def after_train(self):
        self.log.append("after_train")


class CountingStep(TrainStep):
    """Minimises (w - 3)^2 and records the calls the trainer makes."""

    def __init__(self, log):
        self.log = log

    def begin_epoch(self, epoch):
        self.log.append(f"begin_epoch {epoch}")

    def run(self, model):
        self.log.append("run")
        return {"loss": ((model.w - 3.0) ** 2).sum()}

    def after_update(self, model):
        self.log.append(f"after_update {float(model.w.detach()):.2f}")


def test_loop_calls_hooks_and_step_in_order():
    log = []
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([model.w], lr=0.25)
    Trainer(model, opt, CountingStep(log), max_epoch=2, iters_per_epoch=2,
            hooks=[OrderHook(log)]).train()
    step = ["before_step {i}", "run", "after_update {w}", "after_step {i}"]
    want = ["before_train"]
    w = 0.0
    for epoch in range(2):
        want += [f"before_epoch {epoch}", f"begin_epoch {epoch}"]
        for i in range(2):
            w = w - 0.25 * 2 * (w - 3.0)
            want += [s.format(i=epoch * 2 + i, w=f"{w:.2f}") for s in step]
        want.append(f"after_epoch {epoch}")
    want.append("after_train")
    assert log == want


def test_checkpoint_files_and_tensorboard_events_are_written(tmp_path):
    seed_everything(0)
    trainer, _ = build(tmp_path, max_epoch=2)
    trainer.train()
    assert (tmp_path / "last.pth").is_file() and (tmp_path / "best.pth").is_file()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    best = torch.load(tmp_path / "best.pth", weights_only=True)
    last = torch.load(tmp_path / "last.pth", weights_only=True)
    assert last["epoch"] == 2 and last["iteration"] == 8
    assert best["metrics"] == trainer.metrics[best["epoch"]]
    assert best["metrics"]["toy"]["mAP"] == max(m["toy"]["mAP"] for m in trainer.metrics.values())


def test_non_finite_loss_stops_with_the_iteration():
    class NaNStep(TrainStep):
        def run(self, model):
            return {"loss": model.w.sum() * float("nan")}

    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(1))
    trainer = Trainer(model, torch.optim.SGD([model.w], lr=0.1), NaNStep(), 1, 3)
    with pytest.raises(FloatingPointError, match="iteration 0"):
        trainer.train()


class FailingStep(CountingStep):
    """A CountingStep whose ``fail_at``-th run raises."""

    def __init__(self, log, fail_at):
        super().__init__(log)
        self.fail_at = fail_at

    def run(self, model):
        if self.log.count("run") == self.fail_at:
            raise RuntimeError("step failed")
        return super().run(model)


class FailingAfterTrain(HookBase):
    def after_train(self):
        raise OSError("disk full while closing")


def test_after_train_runs_when_a_step_raises_and_the_error_propagates(tmp_path):
    log = []
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(1))
    board = TensorBoardHook(tmp_path)
    trainer = Trainer(model, torch.optim.SGD([model.w], lr=0.25), FailingStep(log, fail_at=2),
                      max_epoch=2, iters_per_epoch=2,
                      hooks=[board, FailingAfterTrain(), OrderHook(log)])
    with pytest.raises(RuntimeError, match="step failed"):
        trainer.train()
    assert log[-4:] == ["before_epoch 1", "begin_epoch 1", "before_step 2", "after_train"]
    assert log.count("run") == 2 and log.count("after_train") == 1
    assert board.writer.all_writers is None  # SummaryWriter.close() drops its file writers


def train_quadratic(amp: bool, device: str) -> torch.Tensor:
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(4, device=device))

    class Quadratic(TrainStep):
        def run(self, m):
            return {"loss": ((m.w - 3.0) ** 2).sum()}

    trainer = Trainer(model, torch.optim.SGD([model.w], lr=0.1), Quadratic(), 2, 3,
                      device=device, amp=amp)
    trainer.train()
    return model.w.detach().cpu(), trainer


def test_amp_is_a_no_op_on_cpu():
    w_amp, trainer = train_quadratic(True, "cpu")
    w_plain, _ = train_quadratic(False, "cpu")
    assert trainer.amp is False and not trainer.scaler.is_enabled()
    assert torch.equal(w_amp, w_plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP runs on CUDA only")
def test_amp_on_cuda_unscales_gradients_before_the_step():
    w, trainer = train_quadratic(True, "cuda")
    assert trainer.amp and trainer.scaler.is_enabled() and trainer.scaler.get_scale() > 1
    want = 3.0 * (1 - 0.8 ** 6)  # six SGD steps on (w - 3)^2 with lr 0.1 from 0
    assert torch.allclose(w, torch.full((4,), want), atol=1e-4)


class EpochSeededBatches:
    """A batch sampler whose order depends only on the value given to ``set_epoch``."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size, self.epoch = n, batch_size, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch))
        return iter(perm.view(-1, self.batch_size).tolist())

    def __len__(self):
        return self.n // self.batch_size


def draw(stream, count):
    return [stream.next()["indexes"].tolist() for _ in range(count)]


def test_stream_starts_a_new_order_when_a_pass_runs_out_and_resumes_the_count():
    from uda_reid.engine.trainer import BatchStream

    def loader():
        return DataLoader(ToyImages(16), batch_sampler=EpochSeededBatches(16, 4))

    stream = BatchStream(loader())
    stream.begin_epoch(0)
    first_epoch = draw(stream, 8)  # two passes of 4 batches
    assert sorted(sum(first_epoch[:4], [])) == list(range(16))
    assert first_epoch[:4] != first_epoch[4:]
    state = stream.state_dict()
    assert state == {"passes": 2, "position": 4}
    stream.begin_epoch(1)
    want = draw(stream, 6)

    resumed = BatchStream(loader())
    resumed.load_state_dict(state)
    resumed.begin_epoch(1)
    assert draw(resumed, 6) == want


def test_stream_without_begin_epoch_resumes_in_the_middle_of_a_pass_without_loading_the_skipped():
    """A stream spanning epochs (StarGAN's): restored after 3 batches of pass 1 (4 per pass),
    it draws pass 1's last batch next, loads only that batch's items, then pass 2."""
    from uda_reid.data.samplers import TorchShuffledBatchSampler
    from uda_reid.engine.trainer import BatchStream

    class Counted(ToyImages):
        loaded = 0

        def __getitem__(self, index):
            Counted.loaded += 1
            return super().__getitem__(index)

    def loader():
        sampler = TorchShuffledBatchSampler(17, 4, seed=3)
        return DataLoader(Counted(17), batch_sampler=sampler, generator=sampler.generator)

    by_hand = [torch.randperm(17, generator=torch.Generator().manual_seed(3 + p))[:16]
               .view(4, 4).tolist() for p in range(3)]
    stream = BatchStream(loader())
    assert draw(stream, 7) == by_hand[0] + by_hand[1][:3]
    state = stream.state_dict()
    assert {k: state[k] for k in ("passes", "position")} == {"passes": 2, "position": 3}
    want = draw(stream, 5)
    assert want == by_hand[1][3:] + by_hand[2]

    resumed = BatchStream(loader())
    resumed.load_state_dict(state)
    Counted.loaded = 0
    assert draw(resumed, 1) == by_hand[1][3:] and Counted.loaded == 4
    assert draw(resumed, 4) == by_hand[2]


def test_progress_logs_the_mean_losses_of_each_period_of_epochs(caplog):
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(1))
    values = iter(range(1, 11))

    class Counting(TrainStep):
        def run(self, m):  # loss values 1, 2, 3, ... (the parameter makes it trainable)
            return {"loss": m.w.sum() * 0 + next(values)}

    trainer = Trainer(model, torch.optim.SGD([model.w], lr=0.1), Counting(), 5, 2,
                      hooks=[ProgressHook(enabled=False, period=2, unit="round")])
    with caplog.at_level("INFO", logger="uda_reid.engine.hooks"):
        trainer.train()
    lines = [r.getMessage().split(", lr")[0] for r in caplog.records if "done" in r.getMessage()]
    assert lines == ["Rounds 1-2/5 done (iteration 4): loss 2.5000, total 2.5000",
                     "Rounds 3-4/5 done (iteration 8): loss 6.5000, total 6.5000",
                     "Round 5/5 done (iteration 10): loss 9.5000, total 9.5000"]
