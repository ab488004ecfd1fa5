"""Where the shipped recipes (the repository's ``configs/`` folder) are found.

``UDA_REID_CONFIGS`` names the folder explicitly; without it the ``configs/`` folder of the
checkout the package runs from (a source tree or an editable install), else the copy a
non-editable install puts in ``<prefix>/share/uda-reid/configs`` (setup.cfg ``data_files``).
Without any of them asking for a recipe is an error, never a silent fallback to the defaults.
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from uda_reid.utils.errors import UserError

ENV_VAR = "UDA_REID_CONFIGS"
CHECKOUT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
INSTALLED_CONFIGS = Path(sysconfig.get_path("data")) / "share" / "uda-reid" / "configs"


class RecipeFolderError(UserError, FileNotFoundError):
    """The recipe folder (``configs/``) cannot be found."""


def recipe_dir() -> Path:
    """The recipe folder: ``$UDA_REID_CONFIGS``, else the checkout's ``configs/``, else the
    installed copy."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise RecipeFolderError(f"{ENV_VAR}={explicit}: no such folder of recipes")
        return folder
    for folder in (CHECKOUT_CONFIGS, INSTALLED_CONFIGS):
        if folder.is_dir():
            return folder
    raise RecipeFolderError(
        f"No recipe folder: neither {CHECKOUT_CONFIGS} nor {INSTALLED_CONFIGS} exists. Install "
        f"with 'pip install <checkout>' or 'pip install -e <checkout>', set {ENV_VAR} to the "
        f"checkout's configs/ folder, or pass a config file explicitly.")


def recipe_file(*parts: str) -> Path:
    """A file under the recipe folder (``recipe_file("reproduce", "references.yml")``); a
    missing file is an error naming it."""
    path = recipe_dir().joinpath(*parts)
    if not path.is_file():
        raise RecipeFolderError(f"No recipe file {path}")
    return path
