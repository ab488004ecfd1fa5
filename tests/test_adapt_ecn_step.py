"""ECNStep inside the shared Trainer: memory momentum per epoch, scalars, resume with memory."""
import copy

import pytest
import torch
from torch import nn

from uda_reid.adapt.memory import ExemplarMemory
from uda_reid.adapt.methods.ecn import ECNObjective, ECNStep
from uda_reid.engine.trainer import Trainer
from uda_reid.models.heads.ecn import ECNHead

NUM_TARGET = 6


class TinyReID(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
        self.head = ECNHead(8, num_classes=3, embedding_dim=5, dropout=0.0)

    def forward(self, x):
        return self.head(self.backbone(x))


def loaders(seed=0):
    g = torch.Generator().manual_seed(seed)
    source = [{"images": torch.randn(4, 3, 2, 2, generator=g),
               "pids": torch.randint(3, (4,), generator=g)} for _ in range(3)]
    target = [{"images": torch.randn(3, 3, 2, 2, generator=g), "indexes": idx}
              for idx in (torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))]
    return source, target


def make_trainer(max_epoch, seed=0):
    torch.manual_seed(seed)
    model = TinyReID()
    objective = ECNObjective(ExemplarMemory(NUM_TARGET, 5), knn=2, neighbor_start_epoch=1)
    step = ECNStep(objective, *loaders())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Trainer(model, optimizer, step, max_epoch=max_epoch, iters_per_epoch=len(step))


def test_memory_follows_the_epoch_momentum_schedule_inside_the_trainer():
    trainer = make_trainer(max_epoch=2)
    seen = []
    update = trainer.step.objective.memory.update

    def spy(features, indexes, momentum):
        seen.append((indexes.tolist(), momentum))
        update(features, indexes, momentum)

    trainer.step.objective.memory.update = spy
    trainer.train()
    # 3 source batches per epoch; the 2 target batches cycle and restart each epoch
    assert seen == [([0, 1, 2], 0.0), ([3, 4, 5], 0.0), ([0, 1, 2], 0.0),
                    ([0, 1, 2], 0.01), ([3, 4, 5], 0.01), ([0, 1, 2], 0.01)]
    norms = trainer.step.objective.memory.slots.norm(dim=1)
    assert torch.allclose(norms, torch.ones(NUM_TARGET), atol=1e-5)
    scalars = trainer.step.scalars()
    assert scalars["memory_filled"] == 1.0 and scalars["neighbors"] == 1.0
    assert scalars["memory_momentum"] == pytest.approx(0.01)


def test_resume_after_an_epoch_gives_the_same_memory_and_weights():
    full = make_trainer(max_epoch=3)
    full.train()
    first = make_trainer(max_epoch=1)
    first.train()
    state = copy.deepcopy(first.state_dict())
    assert "memory.slots" in state["step"]["objective"]
    resumed = make_trainer(max_epoch=3, seed=123)  # different init: everything comes from state
    resumed.load_state_dict(state)
    resumed.train()
    assert torch.allclose(resumed.step.objective.memory.slots, full.step.objective.memory.slots,
                          atol=1e-6)
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
