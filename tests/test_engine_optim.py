"""Optimiser: per-parameter LR and weight decay for biases, norms, backbone and heads."""
import pytest
import torch
from torch import nn

from uda_reid.config import get_default_config
from uda_reid.engine.optim import build_optimizer, build_optimizer_from_config


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2))


def settings(opt):
    """{param name: (lr, weight_decay)} read back from the optimiser's groups."""
    return {name: (g["lr"], g["weight_decay"]) for g in opt.param_groups for name in g["names"]}


def test_groups_follow_bias_norm_backbone_and_head_rules():
    base, wd, wd_norm, wd_bias = 1.0, 0.1, 0.01, 0.001
    opt = build_optimizer(Net(), "SGD", base, wd, wd_norm, wd_bias, bias_lr_factor=2.0,
                          backbone_lr_factor=0.1, heads_lr_factor=10.0)
    want = {
        "backbone.0.weight": (0.1, wd), "backbone.0.bias": (0.2, wd_bias),
        "backbone.1.weight": (0.1, wd_norm), "backbone.1.bias": (0.2, wd_bias),
        "head.0.weight": (10.0, wd_norm), "head.0.bias": (20.0, wd_bias),
        "head.1.weight": (10.0, wd), "head.1.bias": (20.0, wd_bias),
    }
    got = settings(opt)
    assert got.keys() == want.keys()
    for name, (lr, decay) in want.items():
        assert got[name] == pytest.approx((lr, decay)), name
    assert sum(len(g["params"]) for g in opt.param_groups) == 8


def test_frozen_parameters_are_left_out_and_each_param_appears_once():
    net = Net()
    net.backbone[0].weight.requires_grad_(False)
    net.tied = nn.Linear(4, 2)
    net.tied.weight = net.head[1].weight
    opt = build_optimizer(net, "Adam", 0.1, 0.0, 0.0, 0.0)
    names = [n for g in opt.param_groups for n in g["names"]]
    assert "backbone.0.weight" not in names and "tied.weight" not in names
    assert len(names) == len(set(names)) == 8


@pytest.mark.parametrize("name,cls", [("SGD", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("AdamW", torch.optim.AdamW)])
def test_optimiser_kinds_from_config(name, cls):
    cfg = get_default_config()
    cfg.SOLVER.OPT = name
    cfg.SOLVER.MOMENTUM = 0.8
    opt = build_optimizer_from_config(cfg, Net())
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert (group["momentum"] if cls is torch.optim.SGD else group["betas"][0]) == 0.8


def test_unknown_optimiser_is_named():
    with pytest.raises(ValueError, match="SOLVER.OPT.*Lion"):
        build_optimizer(Net(), "Lion", 0.1, 0.0, 0.0, 0.0)
