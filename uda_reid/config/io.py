"""Loading configs: YAML files with ``_BASE_`` inheritance, ``KEY VALUE`` overrides, saving."""
from __future__ import annotations

import ast
import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

import yaml

from uda_reid.config.ranges import check_ranges
from uda_reid.config.renamed import renamed_key, renamed_mapping
from uda_reid.config.root import Config
from uda_reid.config.schema import ConfigError, merge_mapping, set_dotted, to_dict
from uda_reid.utils.atomic import atomic_write_text

BASE_KEY = "_BASE_"


def get_default_config() -> Config:
    """A fresh config holding every default."""
    return Config()


def _read_yaml(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level")
    return data


def _deep_update(base: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """Merge ``new`` into ``base`` recursively; values are copied, so YAML anchors/aliases
    (one mapping object under two keys) never tie two sections together."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def resolve_yaml(path: os.PathLike | str, _seen: Optional[Set[Path]] = None) -> Dict[str, Any]:
    """The merged mapping of ``path`` and its ``_BASE_`` chain (base first, file last); each
    file's deprecated key names are read as the new ones first (:mod:`uda_reid.config.renamed`),
    so that a file's old name overrides its base's new one."""
    path = Path(path).resolve()
    seen = set() if _seen is None else _seen
    if path in seen:
        raise ConfigError(f"Config file {path} inherits from itself through {BASE_KEY}")
    seen.add(path)
    data = renamed_mapping(_read_yaml(path), str(path))
    bases = data.pop(BASE_KEY, None)
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else (bases or []):
        if not (path.parent / base).is_file():
            raise ConfigError(f"Config file not found: {path.parent / base} ({BASE_KEY}: "
                              f"{base} in {path})")
        merged = _deep_update(merged, resolve_yaml(path.parent / base, seen))
    return _deep_update(merged, data)


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply FastReID-style ``KEY VALUE`` pairs (values parsed as YAML scalars/lists; a
    deprecated key name is read as the new one)."""
    if len(overrides) % 2:
        raise ConfigError(f"Overrides come in KEY VALUE pairs; '{overrides[-1]}' has no value")
    for key, raw in zip(overrides[0::2], overrides[1::2]):
        set_dotted(cfg, renamed_key(key, "command line"), parse_override_value(raw),
                   "command line")
    return cfg


def parse_override_value(raw: str) -> Any:
    """A command-line value as YAML (``[1, 2]``, ``true``, ``0.1``) or a Python literal
    (``(256, 128)``, the yacs habit); anything else stays a string."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    return value


def load_config(path: Optional[os.PathLike | str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (with its bases), then command-line overrides; the result's
    ranges are checked (:func:`uda_reid.config.ranges.check_ranges`)."""
    cfg = get_default_config()
    if path:
        merge_mapping(cfg, resolve_yaml(path), str(path))
    apply_overrides(cfg, list(overrides))
    check_ranges(cfg)
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (loadable again with :func:`load_config`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def save_config(cfg: Config, path: os.PathLike | str) -> Path:
    """Write the resolved config atomically (the run's ``config.yaml``)."""
    return atomic_write_text(path, dump_config(cfg))


def config_diff(cfg: Config, other: Config) -> List[str]:
    """Dotted keys whose values differ between two configs (for messages and tests)."""
    def flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    a, b = flat(to_dict(cfg)), flat(to_dict(other))
    return sorted(k for k in a if a[k] != b.get(k))
