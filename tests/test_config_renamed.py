"""Deprecated config names (``ADAPT.MLT`` -> ``ADAPT.PSEUDO_LABEL``): old recipes, command lines
and run folders (``config.yaml`` and the identity in ``last.pth``) are read under the new name."""
import pytest
import torch
import yaml
from torch import nn

from uda_reid.config import ConfigError, apply_overrides, get_default_config, load_config
from uda_reid.config.io import dump_config
from uda_reid.config.renamed import RENAMED, renamed_key, renamed_mapping
from uda_reid.config.schema import to_dict
from uda_reid.engine.checkpoint import CheckpointMismatchError, Checkpointer
from uda_reid.engine.output_dir import check_resumable, config_identity
from uda_reid.engine.trainer import TrainStep
from uda_reid.engine.trainer_builder import build_trainer


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def old_named(data):
    """A config mapping as written before the rename: PSEUDO_LABEL under its old name MLT."""
    data = dict(data, ADAPT=dict(data["ADAPT"]))
    data["ADAPT"]["MLT"] = data["ADAPT"].pop("PSEUDO_LABEL")
    return data


def test_the_old_section_name_in_a_recipe_loads_into_the_new_section(tmp_path):
    path = write(tmp_path / "old.yml", {"ADAPT": {"METHOD": "mlt", "MLT": {
        "MIXTURE": True, "NUM_INSTANCES": 8, "TRANSPORT": "epoch"}}})
    cfg = load_config(path)
    m = cfg.ADAPT.PSEUDO_LABEL
    assert (m.MIXTURE, m.NUM_INSTANCES, m.TRANSPORT) == (True, 8, "epoch")
    assert not hasattr(cfg.ADAPT, "MLT")
    dumped = yaml.safe_load(dump_config(cfg))["ADAPT"]
    assert "MLT" not in dumped and dumped["PSEUDO_LABEL"]["NUM_INSTANCES"] == 8


@pytest.mark.parametrize("base_key, file_key", [("PSEUDO_LABEL", "MLT"), ("MLT", "PSEUDO_LABEL")])
def test_a_file_overrides_its_base_whichever_name_each_uses(tmp_path, base_key, file_key):
    write(tmp_path / "base.yml", {"ADAPT": {base_key: {"NUM_INSTANCES": 2, "DSBN": True,
                                                       "MIXTURE": True}}})
    path = write(tmp_path / "child.yml", {"_BASE_": "base.yml",
                                          "ADAPT": {file_key: {"NUM_INSTANCES": 8}}})
    m = load_config(path).ADAPT.PSEUDO_LABEL
    assert (m.NUM_INSTANCES, m.DSBN, m.MIXTURE) == (8, True, True)


def test_both_names_in_one_file_is_an_error_naming_the_file_and_both_keys(tmp_path):
    path = write(tmp_path / "both.yml", {"ADAPT": {"MLT": {"NUM_INSTANCES": 2},
                                                   "PSEUDO_LABEL": {"NUM_INSTANCES": 8}}})
    with pytest.raises(ConfigError, match=r"both\.yml sets both ADAPT\.MLT .* ADAPT\.PSEUDO_LABEL"):
        load_config(path)


def test_old_keys_on_the_command_line_set_the_new_ones():
    cfg = apply_overrides(get_default_config(), ["ADAPT.MLT.TRANSPORT_EPSILON", "0.5",
                                                 "ADAPT.PSEUDO_LABEL.DSBN", "True"])
    assert cfg.ADAPT.PSEUDO_LABEL.TRANSPORT_EPSILON == 0.5 and cfg.ADAPT.PSEUDO_LABEL.DSBN
    with pytest.raises(ConfigError, match="ADAPT.PSEUDO_LABEL.NUM_INSTANCE'"):
        apply_overrides(cfg, ["ADAPT.MLT.NUM_INSTANCE", "2"])  # a typo is still a typo


def test_renaming_touches_only_the_renamed_section():
    assert renamed_key("ADAPT.MLT", "x") == "ADAPT.PSEUDO_LABEL"
    assert renamed_key("ADAPT.MLTX.A", "x") == "ADAPT.MLTX.A"
    assert renamed_key("MLT.A", "x") == "MLT.A"
    data = {"ADAPT": {"MLT": {"A": 1}, "CLUSTER": {"MLT": 2}}, "MLT": 3}
    assert renamed_mapping(data, "x") == {"ADAPT": {"PSEUDO_LABEL": {"A": 1},
                                                    "CLUSTER": {"MLT": 2}}, "MLT": 3}
    assert data["ADAPT"]["MLT"] == {"A": 1}  # the input is not changed
    assert set(RENAMED) == {"ADAPT.MLT"}


def run_config(tmp_path):
    cfg = get_default_config()
    cfg.OUTPUT_DIR, cfg.MODEL.DEVICE = str(tmp_path), "cpu"
    cfg.ADAPT.PSEUDO_LABEL.MIXTURE = True
    return cfg


def test_a_run_folder_saved_under_the_old_name_is_the_same_run(tmp_path):
    cfg = run_config(tmp_path)
    write(tmp_path / "config.yaml", old_named(to_dict(cfg)))
    check_resumable(cfg)
    cfg.ADAPT.PSEUDO_LABEL.NUM_INSTANCES = 8  # a different run is still told apart
    with pytest.raises(CheckpointMismatchError, match="ADAPT.PSEUDO_LABEL.NUM_INSTANCES: 4 -> 8"):
        check_resumable(cfg)


class Step(TrainStep):
    def run(self, model):
        return {"loss": model(torch.ones(1, 2)).sum()}


def test_a_checkpoint_with_the_old_identity_resumes_through_the_trainer(tmp_path):
    cfg = run_config(tmp_path)
    old = Checkpointer(tmp_path, old_named(config_identity(cfg)))
    old.save("last.pth", {"model": {"weight": torch.full((2, 2), 3.0)}})
    # a checkpointer that compares identities as saved sees a different run
    with pytest.raises(CheckpointMismatchError, match="ADAPT.MLT"):
        Checkpointer(tmp_path, config_identity(cfg)).load("last.pth")
    _, checkpointer = build_trainer(cfg, nn.Linear(2, 2, bias=False), Step(), 1)
    assert torch.equal(checkpointer.load("last.pth")["model"]["weight"], torch.full((2, 2), 3.0))
    cfg.ADAPT.PSEUDO_LABEL.DSBN = True
    _, checkpointer = build_trainer(cfg, nn.Linear(2, 2, bias=False), Step(), 1)
    with pytest.raises(CheckpointMismatchError, match="ADAPT.PSEUDO_LABEL.DSBN: False -> True"):
        checkpointer.load("last.pth")
