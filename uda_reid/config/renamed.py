"""Renamed config keys: the old names that saved run folders (``config.yaml``, the identity in
``last.pth``), recipes and command lines may still use are read as the new ones.

Deprecated names (old -> new):

- ``ADAPT.MLT`` -> ``ADAPT.PSEUDO_LABEL`` (the pseudo-label training options of ``cluster`` and
  ``mlt``; every key inside keeps its name).

A mapping that sets both the old and the new name of one section is an error: which one wins
would be a guess.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, Mapping

from uda_reid.config.schema import ConfigError

logger = logging.getLogger(__name__)

# Old dotted section -> its new dotted name (same parent).
RENAMED: Dict[str, str] = {"ADAPT.MLT": "ADAPT.PSEUDO_LABEL"}


def _warn(old: str, new: str, origin: str) -> None:
    logger.warning("%s: %s is a deprecated name of %s; read as %s", origin, old, new, new)


def renamed_key(key: str, origin: str) -> str:
    """A dotted key (``ADAPT.MLT.MIXTURE``) under its current name
    (``ADAPT.PSEUDO_LABEL.MIXTURE``); other keys unchanged."""
    for old, new in RENAMED.items():
        if key == old or key.startswith(old + "."):
            _warn(old, new, origin)
            return new + key[len(old):]
    return key


def renamed_mapping(data: Mapping[str, Any], origin: str, warn: bool = True) -> Dict[str, Any]:
    """A copy of the nested mapping ``data`` (one YAML file, a saved identity) with every
    deprecated section moved to its new name; ``origin`` names ``data`` in messages."""
    out = copy.deepcopy(dict(data))
    for old, new in RENAMED.items():
        *parents, old_leaf = old.split(".")
        new_leaf = new.rsplit(".", 1)[1]
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        if new_leaf in node:
            raise ConfigError(f"{origin} sets both {old} (a deprecated name) and {new}: "
                              f"write {new} only")
        if warn:
            _warn(old, new, origin)
        node[new_leaf] = node.pop(old_leaf)
    return out
