"""AdaBN: target BatchNorm statistics, checked against a hand computation and end to end."""
import json

import pytest
import torch
from torch import nn

from method_runs import adapt_tool
from tiny_runs import tiny_stage1
from uda_reid.adapt.methods.adabn import AdaBN, BatchNormStatisticsStep
from uda_reid.config import ConfigError, load_config

TARGET = "synth-duke"


class Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"images": self.images[i], "pids": -1, "camids": 0, "indexes": i}


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, images):
        return {"features": self.bn(self.conv(images))}


def test_statistics_are_the_mean_over_target_batches_and_no_weight_moves():
    torch.manual_seed(0)
    model = TinyNet().train()
    model.bn.running_mean.fill_(5.0)  # source statistics, to be forgotten
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    images = torch.randn(12, 3, 6, 6) * 2 + 1
    step = BatchNormStatisticsStep(model, Images(images), batch_size=4)
    assert len(step) == 3
    step.begin_epoch(0)
    drawn, next_batch = [], step.batches.next
    step.batches.next = lambda: drawn.append(next_batch()) or drawn[-1]
    for _ in range(len(step)):
        assert step.run(model) == {}  # no loss: the trainer takes no optimiser step
    assert model.bn.num_batches_tracked.item() == 3
    with torch.no_grad():  # by hand: the average of the three batches' statistics
        outs = [model.conv(b["images"]) for b in drawn]
    assert sorted(torch.cat([b["indexes"] for b in drawn]).tolist()) == list(range(12))
    mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in outs]).mean(0)
    var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in outs]).mean(0)
    assert torch.allclose(model.bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(model.bn.running_var, var, atol=1e-4)
    assert not torch.allclose(model.bn.running_mean, torch.full((4,), 5.0))
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_keeping_the_source_statistics_uses_the_running_average():
    model = TinyNet().train()
    model.bn.running_mean.fill_(5.0)
    step = BatchNormStatisticsStep(model, Images(torch.zeros(4, 3, 6, 6)), batch_size=4,
                                   reset=False)
    step.begin_epoch(0)
    step.run(model)
    bias = model.conv.bias.detach()  # zero images: the conv output is its bias
    assert torch.allclose(model.bn.running_mean, 0.9 * 5.0 + 0.1 * bias, atol=1e-6)


def test_options_are_registered_with_the_method_and_checked():
    cfg = load_config(None, ["ADAPT.ADABN.TRANSFORM", "train", "ADAPT.ADABN.RESET", "False"])
    method = AdaBN.from_config(cfg.ADAPT)
    assert (method.reset, method.transform) == (False, "train")
    with pytest.raises(ValueError, match="ADAPT.ADABN.TRANSFORM.*'flip'"):
        AdaBN(transform="flip")
    with pytest.raises(ConfigError, match="ADAPT.ADABN.RESTE"):
        load_config(None, ["ADAPT.ADABN.RESTE", "True"])
    with pytest.raises(ValueError, match="BatchNorm layers; this one has none"):
        BatchNormStatisticsStep(nn.Conv2d(3, 4, 3), Images(torch.zeros(4, 3, 6, 6)), 4)


def test_tool_changes_only_the_batchnorm_statistics(tmp_path):
    out = tmp_path / "adabn"
    argv = ["--source", "synth-market", "--target", TARGET, "--method", "adabn",
            "--output-dir", str(out), *tiny_stage1(tmp_path / "data", tmp_path / "cache"),
            "ADAPT.SOLVER.IMS_PER_BATCH", "16", "ADAPT.SOLVER.MAX_EPOCH", "1",
            "TEST.EVAL_PERIOD", "1"]
    assert adapt_tool.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["stages"]] == ["source", "adabn"]
    (source_dir,) = (tmp_path / "cache").iterdir()
    before = torch.load(source_dir / "last.pth", weights_only=False)["model"]
    after = torch.load(out / "last.pth", weights_only=False)["model"]
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(before[k], after[k]) for k in stats)
    others = [k for k in before if not k.endswith(("running_mean", "running_var",
                                                   "num_batches_tracked"))]
    assert others and all(torch.equal(before[k], after[k]) for k in others)
    assert results["metrics"][TARGET]["mAP"] != results["stages"][0]["metrics"][TARGET]["mAP"]


def test_a_method_registers_its_options_without_editing_the_adapt_section():
    import copy
    import pickle

    from uda_reid.config.sections.adapt import METHOD_OPTIONS, method_options

    with pytest.raises(KeyError, match="ADAPT.CLUSTER is a shared field"):
        method_options("CLUSTER")(type("Clash", (), {"__annotations__": {"X": "int"}, "X": 1}))
    with pytest.raises(KeyError, match="ADAPT.ADABN is already registered"):
        method_options("ADABN")(type("Other", (), {"__annotations__": {"X": "int"}, "X": 1}))
    with pytest.raises(ValueError, match="upper-case"):
        method_options("adabn2")
    try:
        @method_options("TOYMETHOD")
        class ToyOptions:
            WEIGHT: float = 0.5

        cfg = load_config(None, ["ADAPT.TOYMETHOD.WEIGHT", "2", "ADAPT.ADABN.RESET", "False"])
        assert cfg.ADAPT.TOYMETHOD.WEIGHT == 2.0 and cfg.ADAPT.ADABN.RESET is False
        for copied in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
            assert copied == cfg and copied.ADAPT.TOYMETHOD.WEIGHT == 2.0
        with pytest.raises(AttributeError, match="no config key 'WEIGHTS'"):
            cfg.ADAPT.TOYMETHOD.WEIGHTS = 1.0
    finally:
        METHOD_OPTIONS.pop("TOYMETHOD", None)
    assert not hasattr(load_config(None, []).ADAPT, "TOYMETHOD")
