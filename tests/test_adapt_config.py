"""Adaptation config: argument precedence, default output folder, the stage-1 cache key."""
from pathlib import Path

import pytest

from uda_reid.adapt.pipeline import build_adapt_config, default_config_file, source_key
from uda_reid.config import ConfigError, get_default_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ecn"


def test_named_arguments_override_the_file_and_key_value_pairs_override_both(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("ADAPT:\n  SOURCE: msmt17\n  TARGET: synth-duke\n  METHOD: ecn\nSEED: 3\n")
    cfg = build_adapt_config(source="market", config_file=str(path), overrides=["SEED", "4"])
    assert (cfg.ADAPT.SOURCE, cfg.ADAPT.TARGET, cfg.ADAPT.METHOD, cfg.SEED) == \
        ("market1501", "synth-duke", "ecn", 4)
    assert cfg.OUTPUT_DIR == "output/adapt/market15012synth-duke/ecn"
    cfg = build_adapt_config(source="market", output_dir=str(tmp_path / "o"),
                             overrides=["ADAPT.SOURCE", "duke"])
    assert cfg.ADAPT.SOURCE == "dukemtmc" and cfg.OUTPUT_DIR == str(tmp_path / "o")
    with pytest.raises(ConfigError, match="ADAPT.TARGET.*synth-duk"):
        build_adapt_config(target="synth-duk")


def test_source_key_changes_with_stage_one_settings_only():
    recipe = str(CONFIGS / "synth-market2synth-duke.yml")

    def build(source, target, method, *overrides):
        return build_adapt_config(source, target, method, recipe, overrides=list(overrides))

    key = source_key(build("synth-market", "synth-duke", "ecn"))
    same = [build("synth-market", "synth-market", "direct"),
            build("synth-market", "synth-duke", "ecn", "TEST.EVAL_PERIOD", "3", "ADAPT.ECN.KNN",
                  "4", "ADAPT.SOLVER.BASE_LR", "0.5", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", "o")]
    assert all(source_key(c) == key for c in same)
    different = [build("synth-duke", "synth-duke", "ecn"),
                 build("synth-market", "synth-duke", "ecn", "SOLVER.BASE_LR", "0.5"),
                 build("synth-market", "synth-duke", "ecn", "SEED", "1")]
    assert len({key, *(source_key(c) for c in different)}) == 4


PAIRS = ["market2duke", "duke2market", "market2msmt", "duke2msmt", "synth-market2synth-duke",
         "synth-duke2synth-market"]


@pytest.mark.parametrize("name", PAIRS)
def test_ecn_recipes_load_with_the_original_hyper_parameters(name):
    cfg = load_config(CONFIGS / f"{name}.yml")
    s, e = cfg.ADAPT.SOLVER, cfg.ADAPT.ECN
    assert cfg.ADAPT.METHOD == "ecn" and cfg.MODEL.HEADS.NAME == "ecn"
    assert (s.OPT, s.MOMENTUM, s.NESTEROV, s.WEIGHT_DECAY) == ("SGD", 0.9, True, 5e-4)
    assert s.BACKBONE_LR_FACTOR == 0.1
    assert (e.LAMBDA, e.TEMPERATURE, e.KNN, e.NEIGHBOR_START_EPOCH, e.MOMENTUM_PER_EPOCH) == \
        (0.3, 0.05, 6, 5, 0.01)
    assert (e.SOURCE_LOSS, e.SOURCE_SAMPLER) == ("ce", "random")  # ECN's source branch
    if name.startswith("synth"):  # stage 1 keeps its own solver (no shared YAML objects)
        assert (cfg.SOLVER.OPT, cfg.SOLVER.BACKBONE_LR_FACTOR) == ("Adam", 1.0)
        assert cfg.MODEL.BACKBONE.NAME == "resnet18" and cfg.INPUT.SIZE_TRAIN == (64, 32)
    else:
        assert cfg.MODEL.BACKBONE.NAME == "resnet50" and cfg.MODEL.HEADS.EMBEDDING_DIM == 4096
        assert (s.BASE_LR, s.MAX_EPOCH, s.STEPS, s.IMS_PER_BATCH) == (0.1, 60, (40,), 128)
        assert e.TARGET_IMS_PER_BATCH == 128
        assert e.FROZEN == ("backbone.conv1", "backbone.bn1", "backbone.layer1",
                            "backbone.layer2")


def test_adapt_tool_reports_a_bad_method_and_a_missing_camstyle_folder(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "adapt_tool", Path(__file__).resolve().parents[1] / "tools" / "adapt.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = ["--source", "synth-market", "--target", "synth-duke", "--output-dir",
            str(tmp_path / "out"), "DATASETS.ROOT", str(tmp_path / "data"),
            "DATASETS.SYNTH_SCALE", "tiny", "MODEL.DEVICE", "cpu"]
    assert tool.main(args + ["--method", "ecm"]) == 2
    assert "ADAPT.METHOD" in capsys.readouterr().err
    assert tool.main(args + ["--method", "ecn", "ADAPT.ECN.CAMSTYLE", "True"]) == 2
    err = capsys.readouterr().err
    assert "bounding_box_train_camstyle" in err and "tools/camstyle.py train" in err


def test_without_a_config_file_the_methods_recipe_for_the_pair_is_used():
    cfg = build_adapt_config("synth-market", "synth-duke", "ecn")
    assert cfg.MODEL.HEADS.NAME == "ecn" and cfg.MODEL.BACKBONE.NAME == "resnet18"
    assert cfg.OUTPUT_DIR == load_config(CONFIGS / "synth-market2synth-duke.yml").OUTPUT_DIR
    plain = build_adapt_config("synth-market", "synth-duke", "cluster-none")
    assert plain.MODEL.HEADS.NAME == "bnneck"  # no recipe for the method: the defaults


@pytest.mark.parametrize("source,target,recipe", [("market", "duke", "market2duke"),
                                                  ("market1501", "dukemtmc", "market2duke"),
                                                  ("dukemtmc", "market", "duke2market"),
                                                  ("market", "msmt17", "market2msmt")])
def test_recipe_lookup_accepts_dataset_names_and_aliases(source, target, recipe):
    assert default_config_file(source, target, "ecn") == CONFIGS / f"{recipe}.yml"
    assert default_config_file(source, target, "cluster-none") is None


def test_without_a_source_the_recipe_is_the_methods_one_recipe_for_the_target():
    cc = CONFIGS.parent / "cluster_contrast"
    assert default_config_file("none", "synth-duke", "cluster_contrast") == \
        cc / "synth-market2synth-duke.yml"
    assert default_config_file("None", "duke", "cluster_contrast") == cc / "market2duke.yml"
    for method in ("cluster", "cluster_contrast"):
        with pytest.raises(ConfigError, match="several recipes for msmt17 .duke2msmt.yml, "
                                              "market2msmt.yml.; give one with --config-file"):
            default_config_file("none", "msmt17", method)
    cfg = build_adapt_config("none", "synth-duke", "cluster_contrast")
    assert (cfg.ADAPT.SOURCE, cfg.MODEL.HEADS.NECK_FEAT) == ("none", "after")
    assert cfg.OUTPUT_DIR == "output/adapt/none2synth-duke/cluster_contrast"  # not the UDA run's
    assert build_adapt_config("none", "synth-duke", "cluster_contrast",
                              overrides=["OUTPUT_DIR", "x"]).OUTPUT_DIR == "x"


@pytest.mark.parametrize("name", PAIRS)
def test_direct_recipes_share_the_ecn_source_model(name):
    direct = load_config(CONFIGS.parent / "direct" / f"{name}.yml")
    ecn = load_config(CONFIGS / f"{name}.yml")
    assert direct.ADAPT.METHOD == "direct" and source_key(direct) == source_key(ecn)


def test_camstyle_recipe_is_the_synthetic_ecn_recipe_with_camera_invariance():
    plain = load_config(CONFIGS / "synth-market2synth-duke.yml")
    camstyle = load_config(CONFIGS / "synth-market2synth-duke-camstyle.yml")
    assert camstyle.ADAPT.ECN.CAMSTYLE and not plain.ADAPT.ECN.CAMSTYLE
    assert source_key(camstyle) == source_key(plain)  # one cached stage-1 model for both
    assert camstyle.ADAPT.SOLVER.ITERS_PER_EPOCH == 1895 // 32  # one synth-market pass
    assert (camstyle.ADAPT.SOLVER.BASE_LR, camstyle.ADAPT.SOLVER.OPT) == (
        plain.ADAPT.SOLVER.BASE_LR, plain.ADAPT.SOLVER.OPT)
    assert camstyle.OUTPUT_DIR != plain.OUTPUT_DIR
    # the pair's default recipe stays the plain one
    assert default_config_file("synth-market", "synth-duke", "ecn") == \
        CONFIGS / "synth-market2synth-duke.yml"


def test_ecn_stage2_source_branch_is_plain_ce_on_shuffled_batches_whatever_stage1_used():
    import torch
    import torch.nn.functional as F

    from uda_reid.adapt.base import StageSettings
    from uda_reid.adapt.guard import SourceImages
    from uda_reid.adapt.methods.ecn import ECN, build_source_loader
    from uda_reid.data.samplers import RandomBatchSampler

    cfg = load_config(CONFIGS / "synth-market2synth-duke-camstyle.yml")
    assert cfg.DATALOADER.SAMPLER == "pk" and "TripletLoss" in cfg.MODEL.LOSSES.NAME  # stage 1
    method = ECN.from_config(cfg.ADAPT)

    def stage1_losses(outputs, pids):  # what stage 1 trains with; ECN must not call it
        raise AssertionError("stage-1 losses used in stage 2")

    settings = StageSettings(8, 8, 4, 0, 0, False, "before", None, None, stage1_losses)
    logits, pids = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    loss = method.source_loss_fn(settings)({"logits": logits}, pids)
    torch.testing.assert_close(loss, F.cross_entropy(logits, pids))
    source = SourceImages("s", ["unused.jpg"] * 40, [i // 4 for i in range(40)], [0] * 40)
    loader = build_source_loader(source, settings, method.source_sampler)
    assert isinstance(loader.batch_sampler, RandomBatchSampler) and len(loader) == 5
    identities = [len({i // 4 for i in batch}) for batch in loader.batch_sampler]
    assert max(identities) > 2  # shuffled: not 2 identities x 4 images
    pk = build_source_loader(source, settings, "pk")
    assert all(len({i // 4 for i in batch}) == 2 for batch in pk.batch_sampler)
    model = ECN(source_loss="model").source_loss_fn(StageSettings(
        8, 8, 4, 0, 0, False, "before", None, None, lambda o, p: {"a": o["x"], "b": 2 * o["x"]}))
    assert model({"x": torch.tensor(1.5)}, pids) == 4.5
    for key, value in (("source_loss", "triplet"), ("source_sampler", "balanced")):
        with pytest.raises(ValueError, match=f"ADAPT.ECN.{key.upper()}.*{value}"):
            ECN(**{key: value})


def test_ecn_classes_take_their_defaults_from_the_ecn_section():
    """ADAPT.ECN's defaults are written once: ECN() and ECNObjective(...) without arguments
    equal what the default config builds."""
    import inspect

    from uda_reid.adapt.methods.ecn import ECN, ECNObjective

    built, plain = ECN.from_config(get_default_config().ADAPT), ECN()
    names = ("lam", "temperature", "knn", "neighbor_start_epoch", "momentum_per_epoch",
             "camstyle", "target_batch_size", "source_loss", "source_sampler", "protocol")
    assert [getattr(plain, n) for n in names] == [getattr(built, n) for n in names]
    objective = inspect.signature(ECNObjective).parameters
    assert [objective[n].default for n in names[:5]] == [getattr(built, n) for n in names[:5]]
