"""The pseudo-label methods' option objects: frozen, without defaults of their own (every
default lives once, in the config section), built once by ``from_config`` from the section."""
import dataclasses
import inspect

import pytest

from uda_reid.adapt.mean_teacher import MeanTeacher
from uda_reid.adapt.methods.mmt import MMTConfig, MMTOptions
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_label_options import (BatchOptions, MixtureOptions,
                                                 PseudoLabelLosses, RoundOptions, TeacherOptions)
from uda_reid.adapt.transport import TransportOptions, sinkhorn
from uda_reid.config.sections.pseudo_label import PseudoLabelConfig


@pytest.mark.parametrize("cls", [TransportOptions, MMTOptions, PseudoLabelLosses, RoundOptions,
                                 MixtureOptions, TeacherOptions, BatchOptions])
def test_option_objects_are_frozen_and_repeat_no_default(cls):
    assert cls.__dataclass_params__.frozen
    with_defaults = [f.name for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING]
    assert with_defaults == []


@pytest.mark.parametrize("fn, names", [(sinkhorn, ("epsilon", "iterations", "tolerance")),
                                       (MeanTeacher.__init__, ("momentum", "ramp")),
                                       (PseudoClassifiers.__init__, ("scale",))])
def test_components_take_their_tunables_without_defaults(fn, names):
    params = inspect.signature(fn).parameters
    assert [n for n in names if params[n].default is not inspect.Parameter.empty] == []


def test_transport_options_carry_the_section_values_and_none_means_no_transport():
    m = PseudoLabelConfig()
    assert m.TRANSPORT == "none" and TransportOptions.from_config(m) is None
    rounds = RoundOptions.from_config(m)
    assert rounds.transport is None and not rounds.transports("epoch")
    m.TRANSPORT, m.TRANSPORT_EPSILON, m.TRANSPORT_MARGINALS = "batch", 0.5, "sizes"
    options = TransportOptions.from_config(m)
    assert options == TransportOptions("batch", 0.5, m.TRANSPORT_ITERS, m.TRANSPORT_TOL, "sizes")
    rounds = RoundOptions.from_config(m)
    assert rounds.transports("batch") and not rounds.transports("epoch")
    m.TRANSPORT = "online"
    with pytest.raises(ValueError, match="ADAPT.PSEUDO_LABEL.TRANSPORT must be 'none' or one"):
        TransportOptions.from_config(m)


def test_mmt_options_are_built_once_from_their_section():
    m = MMTConfig()
    m.SOFT_CE_WEIGHT, m.SOFT_TRIPLET_WEIGHT, m.TEACHER_MOMENTUM = 0.25, 0.5, 0.9
    options = MMTOptions.from_config(m)
    assert options.losses == PseudoLabelLosses(m.CE_EPSILON, 0.75, m.TRIPLET_MARGIN, 0.5,
                                               triplet_granularity=0, source_scale=0.0)
    assert options.teacher == TeacherOptions(True, 0.9, m.TEACHER_RAMP)
    assert (options.num_instances, options.cls_scale, options.peer_seed_offset) == \
        (m.NUM_INSTANCES, m.CLS_SCALE, m.PEER_SOURCE_SEED_OFFSET)
    for key, value, message in (("SOFT_CE_WEIGHT", 1.5, "ADAPT.MMT.SOFT_CE_WEIGHT"),
                                ("SOFT_TRIPLET_WEIGHT", -0.1, "ADAPT.MMT.SOFT_TRIPLET_WEIGHT"),
                                ("TEACHER_MOMENTUM", 1.0, "ADAPT.MMT.TEACHER_MOMENTUM"),
                                ("PEER_SOURCE_SEED_OFFSET", -1, "PEER_SOURCE_SEED_OFFSET")):
        bad = dataclasses.replace(MMTConfig(), **{key: value})
        with pytest.raises(ValueError, match=message):
            MMTOptions.from_config(bad)
