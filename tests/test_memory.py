"""ExemplarMemory: zero start, similarities, ECN's update rule, duplicates, schedule, state."""
import math

import pytest
import torch

from uda_reid.adapt.memory import ExemplarMemory, momentum_schedule


def test_memory_starts_at_zero_and_is_a_checkpointed_buffer():
    memory = ExemplarMemory(5, 3)
    assert torch.equal(memory.slots, torch.zeros(5, 3))
    assert list(memory.parameters()) == []
    assert "slots" in memory.state_dict()


def test_update_matches_hand_computation_over_two_steps():
    memory = ExemplarMemory(3, 2)
    # step 1, epoch 0 (alpha = 0): slots become the normalised features
    memory.update(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([0, 2]), 0.0)
    assert torch.allclose(memory.slots, torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, 1.0]]))
    # step 2, alpha = 0.5: 0.5*[0.6, 0.8] + 0.5*[1, 0] = [0.8, 0.4] -> / sqrt(0.8)
    # and 0.5*[0, 0] + 0.5*[0, -3] = [0, -1.5] -> [0, -1]
    memory.update(torch.tensor([[1.0, 0.0], [0.0, -3.0]]), torch.tensor([0, 1]), 0.5)
    r = math.sqrt(0.8)
    expected = torch.tensor([[0.8 / r, 0.4 / r], [0.0, -1.0], [0.0, 1.0]])
    assert torch.allclose(memory.slots, expected, atol=1e-6)


def test_duplicate_indexes_update_sequentially_like_the_original_loop():
    torch.manual_seed(0)
    memory = ExemplarMemory(4, 3)
    memory.slots.copy_(torch.nn.functional.normalize(torch.randn(4, 3), dim=1))
    feats = torch.randn(6, 3)
    idx = torch.tensor([1, 3, 1, 1, 0, 3])
    reference = memory.slots.clone()
    for f, i in zip(feats, idx):  # the original backward, sample by sample
        reference[i] = 0.3 * reference[i] + 0.7 * f
        reference[i] /= reference[i].norm()
    memory.update(feats, idx, 0.3)
    assert torch.allclose(memory.slots, reference, atol=1e-6)
    # hand case: slot 0 twice from zero, alpha 0.5: [1,0,0] -> [1,0,0]; then [.5,.5,0] -> /|.|
    memory = ExemplarMemory(1, 3)
    memory.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 0]), 0.5)
    assert torch.allclose(memory.slots[0], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2.0))


def test_similarities_are_inner_products_with_gradient_to_features_only():
    memory = ExemplarMemory(3, 2)
    memory.slots.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    feats = torch.tensor([[2.0, 1.0]], requires_grad=True)
    sims = memory.similarities(feats)
    assert torch.allclose(sims, torch.tensor([[2.0, 1.0, 2.0]]))
    sims.sum().backward()
    assert torch.allclose(feats.grad, torch.tensor([[1.6, 1.8]]))
    assert not memory.slots.requires_grad


def test_loss_uses_old_slots_and_an_update_before_backward_is_refused():
    memory = ExemplarMemory(2, 2)
    memory.slots.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feats = torch.tensor([[0.0, 1.0]], requires_grad=True)
    sims = memory.similarities(feats)
    memory.update(feats, torch.tensor([0]), 0.0)  # too early: the graph still needs slot 0
    with pytest.raises(RuntimeError, match="inplace"):
        sims[0, 0].backward()
    memory.slots.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    sims = memory.similarities(feats)
    sims[0, 0].backward()
    memory.update(feats, torch.tensor([0]), 0.0)
    assert torch.allclose(feats.grad, torch.tensor([[1.0, 0.0]]))  # gradient of the old slot 0
    assert torch.allclose(memory.slots[0], torch.tensor([0.0, 1.0]))


def test_momentum_schedule_is_point_zero_one_times_epoch():
    assert [momentum_schedule(e) for e in (0, 1, 40, 59)] == pytest.approx([0.0, 0.01, 0.4, 0.59])
    with pytest.raises(ValueError, match="momentum"):
        ExemplarMemory(2, 2).update(torch.ones(1, 2), torch.tensor([0]), 1.5)
    with pytest.raises(IndexError, match="indexes"):
        ExemplarMemory(2, 2).update(torch.ones(1, 2), torch.tensor([2]), 0.5)


def test_memory_state_round_trips_through_state_dict():
    a = ExemplarMemory(4, 2)
    a.update(torch.randn(3, 2), torch.tensor([0, 1, 3]), 0.0)
    b = ExemplarMemory(4, 2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.slots, b.slots)
    assert b.stats()["filled"] == pytest.approx(0.75)
