"""ECN's one-stage protocol (the original's): one model from the pretrained backbone, source and
target losses from the first step, the frozen layers (weights and BatchNorm statistics) kept at
the loaded values, no source model trained."""
from pathlib import Path

import pytest
import torch
import torchvision

from uda_reid.adapt.methods.ecn import ECN
from uda_reid.adapt.pipeline import build_adapt_config, run_adaptation
from uda_reid.config import ConfigError, load_config
from uda_reid.data.datasets import build_dataset
from tiny_runs import tiny_stage1

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ecn"
FROZEN = ("conv1.", "bn1.", "layer1.", "layer2.")


def imagenet_standin(path: Path) -> dict:
    """A ResNet-18 weight file under torchvision's names whose BatchNorm statistics are far
    from a fresh network's, so that any update of them shows."""
    torch.manual_seed(5)
    state = torchvision.models.resnet18(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_()
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith("num_batches_tracked"):
            value.fill_(1000)
    torch.save(state, path)
    return state


def one_stage_config(root: Path, out: Path, *extra: str):
    return build_adapt_config(
        "synth-market", "synth-duke", "ecn", str(CONFIGS / "synth-market2synth-duke.yml"),
        str(out),
        [*tiny_stage1(root / "data", root / "source_models"), "ADAPT.ECN.PROTOCOL", "one_stage",
         "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
         str(root / "imagenet.pth"), "ADAPT.SOLVER.IMS_PER_BATCH", "16",
         "ADAPT.SOLVER.MAX_EPOCH", "2", "ADAPT.SOLVER.ITERS_PER_EPOCH", "2",
         "ADAPT.SOLVER.STEPS", "[1]", "ADAPT.ECN.TARGET_IMS_PER_BATCH", "16",
         "ADAPT.ECN.NEIGHBOR_START_EPOCH", "1", "TEST.EVAL_PERIOD", "2", *extra])


@pytest.fixture(scope="module")
def one_stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_stage")
    weights = imagenet_standin(root / "imagenet.pth")
    results = run_adaptation(one_stage_config(root, root / "out"))
    return root, weights, results


def test_frozen_layers_stay_bit_identical_to_the_loaded_weights_while_the_rest_trains(
        one_stage_run):
    root, loaded, _ = one_stage_run
    trained = torch.load(root / "out" / "last.pth", weights_only=True)["model"]
    frozen = [k for k in loaded if k.startswith(FROZEN)]
    # weights, BN affine parameters and statistics, the downsample BN of layer2 included
    assert {"conv1.weight", "bn1.running_var", "layer1.1.bn2.num_batches_tracked",
            "layer2.0.downsample.1.running_mean"} <= set(frozen)
    for key in frozen:
        assert torch.equal(trained[f"backbone.{key}"], loaded[key]), key
    later = [k for k in loaded if k.startswith(("layer3.", "layer4.")) and
             k.endswith(("conv1.weight", "conv2.weight", "running_mean"))]
    assert len(later) == 18  # 2 blocks x (conv1, conv2, bn1, bn2) + a downsample BN, x 2
    for key in later:
        assert not torch.equal(trained[f"backbone.{key}"], loaded[key]), key


def test_one_stage_trains_no_source_model_and_reports_the_initial_model(one_stage_run):
    root, _, results = one_stage_run
    assert not (root / "source_models").exists()
    initial, ecn = results["stages"]
    assert (initial["name"], ecn["name"]) == ("initial", "ecn")
    source = build_dataset("synth-market", str(root / "data"), "tiny", 0)
    assert initial["weights"] == str(root / "imagenet.pth")
    assert initial["num_classes"] == source.num_train_pids
    assert set(initial["metrics"]) == {"synth-market", "synth-duke"}
    for curve in ecn["curves"]:  # (1 - lambda) * source CE + lambda * invariance from step one
        assert curve["loss_source"] == pytest.approx(0.7 * curve["source_ce"], rel=1e-5)
        assert curve["loss_target"] == pytest.approx(0.3 * curve["target_inv"], rel=1e-5)
    summary = (root / "out" / "log.txt").read_text()
    assert "initial weights (untrained)" in summary and "source only" not in summary


def test_one_stage_without_pretrained_weights_stops_before_writing(tmp_path):
    cfg = one_stage_config(tmp_path, tmp_path / "out", "MODEL.BACKBONE.PRETRAIN", "False")
    with pytest.raises(ConfigError, match="PRETRAIN is False.*PROTOCOL two_stage"):
        run_adaptation(cfg)
    cfg = one_stage_config(tmp_path, tmp_path / "out")  # no weight file at PRETRAIN_PATH
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'imagenet.pth'} not found"):
        run_adaptation(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["market2duke", "duke2market", "market2msmt", "duke2msmt",
                                  "synth-market2synth-duke", "synth-duke2synth-market"])
def test_real_recipes_run_one_stage_from_imagenet_and_the_synthetic_ones_two(name):
    cfg = load_config(CONFIGS / f"{name}.yml")
    method = ECN.from_config(cfg.ADAPT)
    assert (method.source_loss, method.source_sampler) == ("ce", "random")
    if name.startswith("synth"):
        assert method.needs_source_model and not cfg.MODEL.BACKBONE.PRETRAIN
    else:
        assert not method.needs_source_model and cfg.MODEL.BACKBONE.PRETRAIN
        assert cfg.MODEL.BACKBONE.PRETRAIN_PATH and cfg.ADAPT.SOLVER.MAX_EPOCH == 60
    with pytest.raises(ValueError, match="ADAPT.ECN.PROTOCOL.*three_stage"):
        ECN(protocol="three_stage")
