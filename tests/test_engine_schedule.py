"""LR schedule: warm-up, multi-step and cosine values against formulas and FastReID's stepping."""
import math

import pytest
import torch

from uda_reid.config import get_default_config
from uda_reid.engine.lr_schedule import WarmupLRScheduler, build_lr_scheduler, warmup_factor


def make(schedule="multistep", base_lr=1.0, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    return WarmupLRScheduler(opt, schedule=schedule, **kwargs)


def lrs(sched, iterations):
    out = []
    for it in iterations:
        sched.set_iteration(it)
        out.append(sched.optimizer.param_groups[0]["lr"])
    return out


def test_linear_warmup_interpolates_from_factor_to_one():
    sched = make(iters_per_epoch=10, max_epoch=5, warmup_iters=20, warmup_factor=0.1)
    got = lrs(sched, [0, 5, 10, 19, 20, 21])
    want = [0.1, 0.1 * 0.75 + 0.25, 0.1 * 0.5 + 0.5, 0.1 * (1 / 20) + 19 / 20, 1.0, 1.0]
    assert got == pytest.approx(want, rel=1e-12)


def test_constant_warmup_holds_factor_then_jumps_to_base():
    sched = make(iters_per_epoch=10, max_epoch=5, warmup_iters=7, warmup_factor=0.25,
                 warmup_method="constant", base_lr=0.4)
    assert lrs(sched, [0, 6, 7]) == pytest.approx([0.1, 0.1, 0.4])


def test_multistep_milestones_count_from_end_of_warmup_epochs():
    # ipe 10, warm-up 25 iterations: FastReID first steps the main schedule at the end of
    # epoch index 2 (next_iter 30 > 25), so epoch index e has t = e - 2.
    sched = make(iters_per_epoch=10, max_epoch=10, warmup_iters=25, warmup_factor=0.1,
                 steps=(2, 4), gamma=0.1, base_lr=0.5)
    epochs_lr = lrs(sched, [e * 10 + 5 for e in range(10)])
    want = [None, None, 0.5, 0.5, 0.05, 0.05, 0.005, 0.005, 0.005, 0.005]
    assert epochs_lr[2:] == pytest.approx(want[2:])
    assert epochs_lr[0] == pytest.approx(0.5 * (0.1 * (1 - 5 / 25) + 5 / 25))


def test_cosine_per_epoch_matches_closed_form():
    ipe, max_epoch, eta = 4, 8, 0.01
    sched = make("cosine", iters_per_epoch=ipe, max_epoch=max_epoch, eta_min=eta, base_lr=1.0)
    got = lrs(sched, range(0, ipe * max_epoch, ipe))
    want = [eta + (1 - eta) * (1 + math.cos(math.pi * e / max_epoch)) / 2 for e in range(8)]
    assert got == pytest.approx(want, rel=1e-12)


def test_cosine_per_iteration_uses_fractional_epochs_after_delay():
    ipe, eta = 4, 0.0
    sched = make("cosine", iters_per_epoch=ipe, max_epoch=10, eta_min=eta, delay_epochs=2,
                 unit="iter")
    t_max = 10 - 2
    got = lrs(sched, [0, 7, 8, 9, 13, 39])
    want = [1.0, 1.0] + [(1 + math.cos(math.pi * ((it - 8) / ipe) / t_max)) / 2
                         for it in (8, 9, 13, 39)]
    assert got == pytest.approx(want, rel=1e-12)


def fastreid_reference(schedule, base_lr, ipe, max_epoch, warmup_iters, warmup_fac,
                       delay_epochs, steps, gamma, eta_min):
    """FastReID's hook logic with torch's own schedulers: the warm-up sets base*factor each
    iteration; the main scheduler steps at epoch ends once next_iter > warm-up and
    next_epoch > delay."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    if schedule == "multistep":
        main = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(steps), gamma=gamma)
    else:
        t_max = max_epoch - max(math.ceil(warmup_iters / ipe), delay_epochs)
        main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    out = []
    for epoch in range(max_epoch):
        for i in range(ipe):
            it = epoch * ipe + i
            if it < warmup_iters:
                alpha = it / warmup_iters
                opt.param_groups[0]["lr"] = base_lr * (warmup_fac * (1 - alpha) + alpha)
            elif it == warmup_iters:
                opt.param_groups[0]["lr"] = base_lr
            out.append(opt.param_groups[0]["lr"])
            opt.step()
        if (epoch + 1) * ipe > warmup_iters and epoch + 1 > delay_epochs:
            main.step()
    return out


@pytest.mark.parametrize("schedule,warmup,delay", [("multistep", 25, 0), ("multistep", 0, 0),
                                                   ("cosine", 25, 0), ("cosine", 20, 0),
                                                   ("cosine", 10, 4)])
def test_schedule_equals_fastreid_stepping_with_torch_schedulers(schedule, warmup, delay):
    kwargs = dict(ipe=10, max_epoch=12, warmup_iters=warmup, warmup_fac=0.1,
                  delay_epochs=delay, steps=(3, 6), gamma=0.1, eta_min=1e-3)
    want = fastreid_reference(schedule, 0.35, **kwargs)
    sched = make(schedule, base_lr=0.35, iters_per_epoch=10, max_epoch=12,
                 warmup_iters=warmup, warmup_factor=0.1, delay_epochs=delay, steps=(3, 6),
                 gamma=0.1, eta_min=1e-3)
    assert lrs(sched, range(120)) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_each_group_scales_its_own_initial_lr():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]],
                                                                 "lr": 0.1}], lr=1.0)
    sched = WarmupLRScheduler(opt, iters_per_epoch=5, max_epoch=4, steps=(1,), gamma=0.5)
    sched.set_iteration(7)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])


def test_config_names_map_and_bad_values_are_named():
    cfg = get_default_config()
    cfg.SOLVER.SCHED = "CosineAnnealingLR"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert build_lr_scheduler(cfg, opt, 10).schedule == "cosine"
    cfg.SOLVER.SCHED = "Poly"
    with pytest.raises(ValueError, match="SOLVER.SCHED"):
        build_lr_scheduler(cfg, opt, 10)
    with pytest.raises(ValueError, match="WARMUP_METHOD"):
        warmup_factor(0, 10, 0.1, "exp")
    with pytest.raises(ValueError, match="MAX_EPOCH"):
        make("cosine", iters_per_epoch=10, max_epoch=2, warmup_iters=30)
