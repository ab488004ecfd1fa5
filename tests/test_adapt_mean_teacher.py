"""Mean teacher: the EMA update against a hand computation, the momentum ramp, the swap."""
import pytest
import torch
from torch import nn

from uda_reid.adapt.mean_teacher import MeanTeacher, MeanTeacherHook, ema_momentum


def test_ema_update_of_weights_and_buffers_by_hand():
    student = nn.BatchNorm1d(2)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([1.0, 2.0]))
        student.running_mean.copy_(torch.tensor([4.0, -4.0]))
    mt = MeanTeacher(student, momentum=0.9, ramp=False)
    assert not any(p.requires_grad for p in mt.teacher.parameters())
    with torch.no_grad():
        student.weight.copy_(torch.tensor([3.0, 0.0]))
        student.running_mean.copy_(torch.tensor([0.0, 0.0]))
        student.num_batches_tracked.fill_(7)
    assert mt.update() == 0.9
    # 0.9 * teacher + 0.1 * student
    assert torch.allclose(mt.teacher.weight, torch.tensor([1.2, 1.8]))
    assert torch.allclose(mt.teacher.running_mean, torch.tensor([3.6, -3.6]))
    assert int(mt.teacher.num_batches_tracked) == 7
    assert mt.update() == 0.9
    assert torch.allclose(mt.teacher.weight, torch.tensor([0.9 * 1.2 + 0.3, 0.9 * 1.8]))


def test_ramp_follows_min_of_one_minus_inverse_step_and_momentum():
    assert [ema_momentum(t, 0.999, True) for t in (0, 1, 3)] == [0.0, 0.5, 0.75]
    assert ema_momentum(5000, 0.999, True) == 0.999
    assert ema_momentum(0, 0.999, False) == 0.999
    student = nn.Linear(2, 1)
    mt = MeanTeacher(student, 0.999, ramp=True)
    with torch.no_grad():
        student.weight.add_(1.0)
    mt.update()  # alpha 0: the teacher becomes the student
    assert torch.equal(mt.teacher.weight, student.weight)
    with pytest.raises(ValueError, match="TEACHER_MOMENTUM"):
        MeanTeacher(student, 1.0, ramp=True)
    student.add_module("extra", nn.Linear(1, 1))  # no silent partial averaging
    with pytest.raises(RuntimeError, match="changed after"):
        mt.update()


def test_hook_puts_the_teacher_in_the_model_between_epochs_and_back():
    student = nn.Linear(2, 1)
    mt = MeanTeacher(student, 0.5, ramp=False)
    hook = MeanTeacherHook(mt)
    w0 = student.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(2.0)
    hook.after_step()  # teacher = w0 + 1
    hook.after_epoch()
    assert torch.allclose(student.weight, w0 + 1.0) and torch.allclose(mt.teacher.weight, w0 + 2)
    state = hook.state_dict()
    other = MeanTeacherHook(MeanTeacher(nn.Linear(2, 1), 0.5, ramp=False))
    other.load_state_dict(state)
    assert other.swapped and torch.allclose(other.mean_teacher.teacher.weight, w0 + 2.0)
    hook.before_epoch()
    assert torch.allclose(student.weight, w0 + 2.0) and torch.allclose(mt.teacher.weight, w0 + 1)
    hook.before_epoch()  # no second swap
    assert torch.allclose(student.weight, w0 + 2.0)
