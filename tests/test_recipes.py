"""Recipe folder lookup: the checkout's configs/, an explicit UDA_REID_CONFIGS, the installed copy,
a clear error."""
import configparser
import shutil
from pathlib import Path

import pytest

from camstyle.jobs import load_camstyle_config
from uda_reid import recipes
from uda_reid.adapt.pipeline import default_config_file
from uda_reid.engine.run_tool import run_tool
from uda_reid.recipes import RecipeFolderError, recipe_dir
from uda_reid.reproduce.references import load_references

CHECKOUT = Path(__file__).resolve().parents[1] / "configs"


def test_the_checkout_configs_folder_is_the_default(monkeypatch):
    monkeypatch.delenv(recipes.ENV_VAR, raising=False)
    assert recipe_dir() == CHECKOUT


def test_an_explicit_folder_is_used_for_method_recipes_and_references(tmp_path, monkeypatch):
    (tmp_path / "ecn").mkdir()
    (tmp_path / "ecn" / "market2duke.yml").write_text("SEED: 7\n")
    (tmp_path / "camstyle").mkdir()
    (tmp_path / "camstyle" / "synth-duke.yml").write_text("SEED: 9\n")
    (tmp_path / "reproduce").mkdir()
    shutil.copy(CHECKOUT / "reproduce" / "references.yml", tmp_path / "reproduce")
    monkeypatch.setenv(recipes.ENV_VAR, str(tmp_path))
    assert default_config_file("market", "duke", "ecn") == tmp_path / "ecn" / "market2duke.yml"
    assert default_config_file("market", "duke", "mlt") is None  # no recipe for the method
    assert load_references() == load_references(CHECKOUT / "reproduce" / "references.yml")
    assert load_camstyle_config("synth-duke").SEED == 9
    assert load_camstyle_config("synth-market").SEED == 0  # no recipe for it: the defaults


def test_every_recipe_folder_ships_with_a_non_editable_install():
    """setup.cfg's data_files copy each folder of configs/ to share/uda-reid/configs/."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the case of the folder names
    parser.read(CHECKOUT.parent / "setup.cfg")
    shipped = {target.strip(): source.strip()
               for target, source in parser["options.data_files"].items()}
    folders = {p.parent.relative_to(CHECKOUT.parent).as_posix()
               for p in CHECKOUT.rglob("*") if p.is_file()}
    assert shipped == {f"share/uda-reid/{f}": f"{f}/*.yml" for f in folders}


def test_an_install_without_its_checkout_reads_the_installed_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(recipes.ENV_VAR, raising=False)
    monkeypatch.setattr(recipes, "CHECKOUT_CONFIGS", tmp_path / "site-packages" / "configs")
    installed = tmp_path / "share" / "uda-reid" / "configs"
    (installed / "ecn").mkdir(parents=True)
    (installed / "ecn" / "market2duke.yml").write_text("SEED: 7\n")
    monkeypatch.setattr(recipes, "INSTALLED_CONFIGS", installed)
    assert recipe_dir() == installed
    assert default_config_file("market", "duke", "ecn") == installed / "ecn" / "market2duke.yml"


def test_a_missing_recipe_folder_is_an_error_not_the_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(recipes.ENV_VAR, raising=False)
    monkeypatch.setattr(recipes, "CHECKOUT_CONFIGS", tmp_path / "site-packages" / "configs")
    monkeypatch.setattr(recipes, "INSTALLED_CONFIGS", tmp_path / "share" / "uda-reid" / "configs")
    with pytest.raises(RecipeFolderError, match="No recipe folder.*UDA_REID_CONFIGS"):
        default_config_file("market", "duke", "ecn")
    with pytest.raises(RecipeFolderError):
        load_references()
    with pytest.raises(RecipeFolderError):
        load_camstyle_config("synth-duke")
    assert load_camstyle_config("synth-duke", str(CHECKOUT / "camstyle" / "synth-duke.yml"))
    assert run_tool(lambda: default_config_file("market", "duke", "ecn")) == 2
    assert capsys.readouterr().err.startswith("error: No recipe folder: ")
    monkeypatch.setenv(recipes.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(RecipeFolderError, match=r"UDA_REID_CONFIGS=.*nowhere: no such folder"):
        recipe_dir()
