"""ADAPT section: target-domain adaptation (stage 1 source model, stage 2 the method).

The shared parts (stage-2 solver, clustering, pseudo-label training) are fields of
:class:`AdaptConfig`; a method's own options are a section declared in the method's module with
``@method_options("KEY")``, which adds it as ``ADAPT.KEY``: adding a method never edits this
file. :func:`adapt_config` builds the section with every registered method's options.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import field
from typing import Any, Callable, Dict, Mapping, Tuple, Type

from uda_reid.config.schema import merge_mapping, section, to_dict
from uda_reid.config.sections.cluster import ClusterConfig
from uda_reid.config.sections.pseudo_label import PseudoLabelConfig
from uda_reid.config.sections.solver import SolverConfig

# ADAPT.<key> -> the registered method's options section (filled by @method_options).
METHOD_OPTIONS: Dict[str, type] = {}


@section
class AdaptConfig:
    METHOD: str = "direct"
    SOURCE: str = "synth-market"  # "none": no source stage (source-free, --source none)
    TARGET: str = "synth-duke"
    # Stage-1 source models are cached here, one folder per hash of the source config.
    SOURCE_CACHE: str = "output/source_models"
    # Optimiser and schedule of stage 2 (SOLVER is stage 1's).
    SOLVER: SolverConfig = field(default_factory=SolverConfig)
    CLUSTER: ClusterConfig = field(default_factory=ClusterConfig)
    PSEUDO_LABEL: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)

    def __reduce__(self) -> Tuple[Callable[[Mapping[str, Any]], "AdaptConfig"], tuple]:
        # the class holding the methods' sections is built at run time: rebuild it by value
        return adapt_config_from_dict, (to_dict(self),)


def method_options(key: str) -> Callable[[type], type]:
    """Class decorator: ``cls`` becomes a config section, available as ``ADAPT.<key>``."""

    if key != key.upper() or not key.isidentifier():
        raise ValueError(f"method options key {key!r} must be an upper-case identifier")

    def register(cls: type) -> type:
        if key in AdaptConfig.__dataclass_fields__:
            raise KeyError(f"ADAPT.{key} is a shared field of the ADAPT section")
        if key in METHOD_OPTIONS and METHOD_OPTIONS[key].__qualname__ != cls.__qualname__:
            raise KeyError(f"ADAPT.{key} is already registered by {METHOD_OPTIONS[key]}")
        METHOD_OPTIONS[key] = section(cls)
        return METHOD_OPTIONS[key]

    return register


@functools.lru_cache(maxsize=None)
def _adapt_class(options: Tuple[Tuple[str, type], ...]) -> Type[AdaptConfig]:
    fields = [(key, cls, field(default_factory=cls)) for key, cls in options]
    made = dataclasses.make_dataclass("AdaptConfig", fields, bases=(AdaptConfig,))
    made.__module__, made.__doc__ = __name__, AdaptConfig.__doc__
    return made


def adapt_config() -> AdaptConfig:
    """A default ``ADAPT`` section with the options of every registered method (the built-in
    methods of :mod:`uda_reid.adapt.methods` are imported, and so registered, first)."""
    import uda_reid.adapt.methods  # noqa: F401  (registers the built-in methods' options)

    return _adapt_class(tuple(sorted(METHOD_OPTIONS.items())))()


def adapt_config_from_dict(data: Mapping[str, Any]) -> AdaptConfig:
    """An ``ADAPT`` section holding ``data`` (a :func:`to_dict` of one)."""
    adapt = adapt_config()
    merge_mapping(adapt, data, "a copied ADAPT section", "ADAPT.")
    return adapt
