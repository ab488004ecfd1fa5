"""Typed configuration: defaults per section, YAML with ``_BASE_``, ``KEY VALUE`` overrides."""
from uda_reid.config.io import (apply_overrides, dump_config, get_default_config, load_config,
                                resolve_yaml, save_config)
from uda_reid.config.root import Config
from uda_reid.config.schema import ConfigError

__all__ = ["Config", "ConfigError", "apply_overrides", "dump_config", "get_default_config",
           "load_config", "resolve_yaml", "save_config"]
