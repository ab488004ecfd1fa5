"""Typed config schema machinery: dataclass sections, conversion and validation.

A config is a tree of dataclasses whose field names are the upper-case keys users write in
YAML (``MODEL.BACKBONE.NAME``). Every field has a default. Values coming from YAML or the
command line are converted to the field's declared type; unknown keys are errors naming the
key, where it came from, and the closest known keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Dict, List, Mapping, Tuple, Union
from uda_reid.utils.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the key and its origin."""


def section(cls: type) -> type:
    """Class decorator for config sections: a dataclass that rejects unknown attributes
    (assigning ``cfg.MODEL.BACKBONE.NAMEE`` is an ``AttributeError`` naming the closest keys)."""
    cls.__setattr__ = _set_known_attribute
    return dataclasses.dataclass(cls)


def _set_known_attribute(self: Any, name: str, value: Any) -> None:
    fields = type(self).__dataclass_fields__
    if name not in fields:
        close = closest_keys(name, fields)
        hint = f" Closest known keys: {', '.join(close)}." if close else ""
        raise AttributeError(f"{type(self).__name__} has no config key '{name}'.{hint}")
    object.__setattr__(self, name, value)


def _field_types(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, key: str, origin: str) -> Any:
    """Convert ``value`` to type ``tp`` (bool/int/float/str/tuple/list/Optional/Union)."""
    where = f"{key} (from {origin})"
    args = typing.get_args(tp)
    base = typing.get_origin(tp)
    if base is Union:
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, key, origin)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if base in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            value = [value]
        if base is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [convert(v, args[0], key, origin) for v in value]
        elif base is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            items = [convert(v, a, key, origin) for v, a in zip(value, args)]
        else:
            items = [convert(v, args[0], key, origin) if args else v for v in value]
        return tuple(items) if base is tuple else list(items)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def closest_keys(key: str, known: typing.Iterable[str]) -> List[str]:
    """Up to three known (dotted) keys close to ``key``, else those with a close last part."""
    known = list(known)
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if not close:
        close = [k for k in known if k.rsplit(".", 1)[-1] in difflib.get_close_matches(
            leaf, [c.rsplit(".", 1)[-1] for c in known], n=3, cutoff=0.7)][:3]
    return close


def unknown_key_error(key: str, known: typing.Iterable[str], origin: str) -> ConfigError:
    """The error for an unknown key, naming up to three close known keys."""
    close = closest_keys(key, known)
    hint = f" Closest known keys: {', '.join(close)}." if close else ""
    return ConfigError(f"Unknown config key '{key}' (from {origin}).{hint}")


def all_keys(cfg: Any, prefix: str = "") -> Tuple[str, ...]:
    """Every dotted key (leaves and sections) of a config tree."""
    keys = []
    for f in dataclasses.fields(cfg):
        key = prefix + f.name
        keys.append(key)
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(all_keys(value, key + "."))
    return tuple(keys)


def merge_mapping(cfg: Any, data: Mapping[str, Any], origin: str, prefix: str = "",
                  root: Any = None) -> None:
    """Write the nested mapping ``data`` into the dataclass tree ``cfg`` in place."""
    root = cfg if root is None else root
    types = _field_types(type(cfg))
    for name, value in data.items():
        key = prefix + str(name)
        if name not in types:
            raise unknown_key_error(key, all_keys(root), origin)
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} (from {origin}): is a section, expected a mapping, "
                                  f"got {value!r}")
            merge_mapping(current, value, origin, key + ".", root)
        else:
            setattr(cfg, name, convert(value, types[name], key, origin))


def set_dotted(cfg: Any, key: str, value: Any, origin: str) -> None:
    """Set one dotted key (``MODEL.BACKBONE.NAME``) to ``value`` converted to its type."""
    node = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node) or part not in _field_types(type(node)):
            raise unknown_key_error(key, all_keys(cfg), origin)
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(node, part)):
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{key} (from {origin}): is a section; set one of its keys")
                merge_mapping(getattr(node, part), value, origin, key + ".", cfg)
            else:
                setattr(node, part, convert(value, _field_types(type(node))[part], key, origin))
        node = getattr(node, part)


def to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out
