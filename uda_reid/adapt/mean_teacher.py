"""Mean teacher: an exponential moving average (EMA) of a student model's weights and buffers,
as a trainer hook any pseudo-label method can switch on.

After every optimiser step, each floating-point parameter and buffer of the teacher becomes
``alpha * teacher + (1 - alpha) * student`` (integer buffers, e.g. BatchNorm's
``num_batches_tracked``, are copied), with ``alpha = min(1 - 1 / (t + 1), momentum)`` at the
t-th update (0-based) when ``ramp`` is set: the teacher starts as the student and averages over
at most ~1 / (1 - momentum) steps. UDAStrongBaseline (``UDAsbs/trainers.py``,
``_update_ema_variables``; ``--alpha 0.999`` in ``sbs_trainkmeans.py``) averages the
parameters this way; its teacher gets its BatchNorm statistics from its own training-mode
forward of every batch, which here is replaced by the average of the student's statistics (no
second forward pass).

Evaluation sees the teacher: at the end of every epoch :class:`MeanTeacherHook` swaps the
teacher's tensors into the trained model (so evaluation, ``best.pth`` and ``last.pth`` hold
the teacher) and swaps the student back before the next epoch; the hook's own state holds
the other set, so a resumed run continues exactly.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import nn

from uda_reid.engine.hooks import HookBase


def ema_momentum(update: int, momentum: float, ramp: bool) -> float:
    """alpha of the ``update``-th (0-based) EMA step."""
    return min(1.0 - 1.0 / (update + 1), momentum) if ramp else momentum


def _tensors(model: nn.Module) -> List[torch.Tensor]:
    """Parameters then buffers, in a fixed order (the state-dict order without duplicates)."""
    return list(model.parameters()) + list(model.buffers())


class MeanTeacher:
    """The teacher (a frozen deep copy of ``student``) and its EMA update."""

    def __init__(self, student: nn.Module, momentum: float, ramp: bool) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError("ADAPT.PSEUDO_LABEL.TEACHER_MOMENTUM must lie in [0, 1), got "
                             f"{momentum}")
        self.student = student
        self.teacher = copy.deepcopy(student)
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.teacher.eval()
        self.momentum = momentum
        self.ramp = ramp
        self.updates = 0

    def _pairs(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """(teacher, student) tensor pairs; the student must not have changed structure."""
        teacher, student = _tensors(self.teacher), _tensors(self.student)
        if len(teacher) != len(student) or any(t.shape != s.shape
                                               for t, s in zip(teacher, student)):
            raise RuntimeError("MeanTeacher: the student's modules changed after the teacher "
                               "was copied from it")
        return list(zip(teacher, student))

    @torch.no_grad()
    def update(self) -> float:
        """One EMA step from the student's current tensors; returns its alpha."""
        alpha = ema_momentum(self.updates, self.momentum, self.ramp)
        for t, s in self._pairs():
            if t.is_floating_point():
                t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
            else:
                t.copy_(s)
        self.updates += 1
        return alpha

    @torch.no_grad()
    def copy_submodule(self, name: str) -> None:
        """Make the teacher's sub-module ``name`` equal to the student's (e.g. classifiers
        re-initialised for new pseudo-classes)."""
        self.teacher.get_submodule(name).load_state_dict(
            self.student.get_submodule(name).state_dict())

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the student's and the teacher's tensors in place."""
        for t, s in self._pairs():
            held = s.detach().clone()
            s.copy_(t)
            t.copy_(held)

    def state_dict(self) -> Dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.updates = int(state["updates"])


class MeanTeacherHook(HookBase):
    """Updates the teacher after every step; between epochs the trained model holds the
    teacher's tensors (evaluation and checkpoints see the teacher), the student's return
    before the next epoch."""

    def __init__(self, mean_teacher: MeanTeacher) -> None:
        self.mean_teacher = mean_teacher
        self.swapped = False

    def _swap(self) -> None:
        self.mean_teacher.swap()
        self.swapped = not self.swapped

    def before_epoch(self) -> None:
        if self.swapped:
            self._swap()

    def after_step(self) -> None:
        self.mean_teacher.update()

    def after_epoch(self) -> None:
        self._swap()

    def state_dict(self) -> Dict[str, Any]:
        return {"mean_teacher": self.mean_teacher.state_dict(), "swapped": self.swapped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean_teacher.load_state_dict(state["mean_teacher"])
        self.swapped = bool(state["swapped"])
