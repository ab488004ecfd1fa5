"""Config system: defaults, _BASE_ inheritance, overrides, type conversion, errors, round trip."""
import copy
import pickle
from pathlib import Path

import pytest

from uda_reid.config import ConfigError, dump_config, get_default_config, load_config, save_config
from uda_reid.config.io import config_diff


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_inheritance_child_overrides_parent_and_keeps_siblings(tmp_path):
    write(tmp_path / "base.yml", "MODEL:\n  BACKBONE:\n    NAME: resnet50\n    LAST_STRIDE: 2\n"
          "SOLVER:\n  BASE_LR: 0.1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    child = write(sub / "child.yml", "_BASE_: ../base.yml\nMODEL:\n  BACKBONE:\n    NAME: resnet18\n")
    cfg = load_config(child)
    assert cfg.MODEL.BACKBONE.NAME == "resnet18"
    assert cfg.MODEL.BACKBONE.LAST_STRIDE == 2
    assert cfg.SOLVER.BASE_LR == 0.1
    assert cfg.SOLVER.MOMENTUM == get_default_config().SOLVER.MOMENTUM


def test_multiple_bases_apply_in_order(tmp_path):
    write(tmp_path / "a.yml", "SEED: 1\nOUTPUT_DIR: a\n")
    write(tmp_path / "b.yml", "SEED: 2\n")
    cfg = load_config(write(tmp_path / "c.yml", "_BASE_: [a.yml, b.yml]\n"))
    assert (cfg.SEED, cfg.OUTPUT_DIR) == (2, "a")


def test_command_line_overrides_win_and_are_converted(tmp_path):
    path = write(tmp_path / "c.yml", "SOLVER:\n  BASE_LR: 0.1\n  STEPS: [10, 20]\n")
    cfg = load_config(path, ["SOLVER.BASE_LR", "0.5", "SOLVER.STEPS", "[3]", "INPUT.SIZE_TRAIN",
                             "(64, 32)", "TEST.FLIP", "True", "SOLVER.MAX_EPOCH", "7"])
    assert cfg.SOLVER.BASE_LR == 0.5 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.SOLVER.STEPS == (3,)
    assert cfg.INPUT.SIZE_TRAIN == (64, 32)
    assert cfg.TEST.FLIP is True
    assert cfg.SOLVER.MAX_EPOCH == 7


def test_int_given_for_float_key_becomes_float_and_string_list_becomes_tuple(tmp_path):
    cfg = load_config(write(tmp_path / "c.yml", "SOLVER:\n  BASE_LR: 1\nDATASETS:\n  NAMES: market\n"))
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.DATASETS.NAMES == ("market",)


def test_unknown_key_in_file_names_key_file_and_closest_keys(tmp_path):
    path = write(tmp_path / "bad.yml", "MODEL:\n  BACKBONE:\n    NAEM: resnet18\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "MODEL.BACKBONE.NAEM" in msg and str(path) in msg and "MODEL.BACKBONE.NAME" in msg


def test_unknown_override_and_bad_values_are_errors():
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR"):
        load_config(None, ["SOLVER.BASE_LRR", "0.1"])
    with pytest.raises(ConfigError, match="SOLVER.MAX_EPOCH"):
        load_config(None, ["SOLVER.MAX_EPOCH", "ten"])
    with pytest.raises(ConfigError, match="TEST.FLIP"):
        load_config(None, ["TEST.FLIP", "maybe"])
    with pytest.raises(ConfigError, match="no value"):
        load_config(None, ["SEED"])
    with pytest.raises(ConfigError, match="section"):
        load_config(None, ["MODEL", "resnet"])


def test_missing_file_and_cyclic_base_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")
    write(tmp_path / "x.yml", "_BASE_: y.yml\n")
    write(tmp_path / "y.yml", "_BASE_: x.yml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "x.yml")


def test_saved_config_loads_back_to_an_equal_config(tmp_path):
    cfg = load_config(None, ["MODEL.BACKBONE.NAME", "resnet34", "SOLVER.STEPS", "[5, 9]",
                             "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]", "SEED", "3"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert config_diff(again, cfg) == []
    assert config_diff(get_default_config(), cfg) == [
        "INPUT.PIXEL_MEAN", "MODEL.BACKBONE.NAME", "SEED", "SOLVER.STEPS"]
    assert dump_config(again) == dump_config(cfg)


def test_yaml_anchor_shared_by_two_sections_does_not_tie_them(tmp_path):
    base = write(tmp_path / "base.yml", "SOLVER: &solver\n  BASE_LR: 0.1\n"
                 "ADAPT:\n  SOLVER: *solver\n")
    child = write(tmp_path / "child.yml", "_BASE_: base.yml\nSOLVER:\n  BASE_LR: 0.5\n")
    cfg = load_config(child)
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.ADAPT.SOLVER.BASE_LR == 0.1
    assert load_config(base).ADAPT.SOLVER.BASE_LR == 0.1


def test_assigning_an_unknown_attribute_names_the_closest_keys():
    cfg = get_default_config()
    with pytest.raises(AttributeError, match=r"BackboneConfig has no config key 'NAMEE'\. "
                                             r"Closest known keys: NAME\."):
        cfg.MODEL.BACKBONE.NAMEE = "x"
    with pytest.raises(AttributeError, match="'MODELL'.*Closest known keys: MODEL"):
        cfg.MODELL = {}
    assert not hasattr(cfg.MODEL.BACKBONE, "NAMEE") and not hasattr(cfg, "MODELL")
    cfg.MODEL.BACKBONE.NAME = "resnet18"  # known keys still assign
    assert cfg.MODEL.BACKBONE.NAME == "resnet18"


def test_sections_still_copy_and_pickle_to_equal_independent_configs():
    cfg = load_config(None, ["MODEL.BACKBONE.NAME", "resnet18", "SOLVER.BASE_LR", "0.01"])
    copied = copy.deepcopy(cfg)
    restored = pickle.loads(pickle.dumps(cfg))
    assert copied == cfg and restored == cfg
    copied.MODEL.BACKBONE.NAME = "resnet34"
    assert cfg.MODEL.BACKBONE.NAME == "resnet18" and restored.MODEL.BACKBONE.NAME == "resnet18"
    with pytest.raises(AttributeError, match="NAMEE"):
        restored.MODEL.BACKBONE.NAMEE = "x"
