"""Where the shipped recipes (the repository's ``configs/`` folder) are found.

``UDA_REID_CONFIGS`` names the folder explicitly; without it the ``configs/`` folder of the
checkout the package runs from (a source tree or an editable install). A package installed
without its checkout has no recipes: asking for them is then an error, never a silent fallback
to the defaults.
"""
from __future__ import annotations

import os
from pathlib import Path

from uda_reid.utils.errors import UserError

ENV_VAR = "UDA_REID_CONFIGS"
CHECKOUT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class RecipeFolderError(UserError, FileNotFoundError):
    """The recipe folder (``configs/``) cannot be found."""


def recipe_dir() -> Path:
    """The recipe folder: ``$UDA_REID_CONFIGS``, else the checkout's ``configs/``."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise RecipeFolderError(f"{ENV_VAR}={explicit}: no such folder of recipes")
        return folder
    if not CHECKOUT_CONFIGS.is_dir():
        raise RecipeFolderError(
            f"No recipe folder: {CHECKOUT_CONFIGS} does not exist (uda_reid installed without "
            f"its checkout). Install with 'pip install -e <checkout>', set {ENV_VAR} to the "
            f"checkout's configs/ folder, or pass a config file explicitly.")
    return CHECKOUT_CONFIGS


def recipe_file(*parts: str) -> Path:
    """A file under the recipe folder (``recipe_file("reproduce", "references.yml")``); a
    missing file is an error naming it."""
    path = recipe_dir().joinpath(*parts)
    if not path.is_file():
        raise RecipeFolderError(f"No recipe file {path}")
    return path
