"""Options of training on clustering pseudo-labels (``cluster``, ``mlt`` and ``mmt``): small
frozen values built once from the method's config section (their defaults are the section's)
and handed to the method and its :class:`~uda_reid.adapt.methods.cluster.PseudoLabelStep`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from uda_reid.adapt.transport import TransportOptions


@dataclass(frozen=True)
class PseudoLabelLosses:
    """The losses of a batch: the mean over granularities of each classifier's label-smoothed
    CE (smoothing ``ce_epsilon``) times ``ce_scale``; batch-hard triplet (``triplet_margin``)
    times ``triplet_scale`` on the labels of granularity ``triplet_granularity`` (which also
    drive the PK sampler); the mixture's source CE times ``source_scale`` (0: the source rows
    carry no loss and stay out of the triplet)."""

    ce_epsilon: float
    ce_scale: float
    triplet_margin: float
    triplet_scale: float
    triplet_granularity: int
    source_scale: float

    @classmethod
    def from_config(cls, m) -> "PseudoLabelLosses":
        """From an ADAPT.PSEUDO_LABEL section."""
        return cls(m.CE_EPSILON, m.CE_SCALE, m.TRIPLET_MARGIN, m.TRIPLET_SCALE,
                   m.TRIPLET_GRANULARITY, m.SOURCE_SCALE)


@dataclass(frozen=True)
class RoundOptions:
    """When the labels change: re-clustering at the start of every ``recluster_period``-th
    epoch; ``transport`` refines them in between (per epoch) or within each batch (None: the
    labels stay as clustered)."""

    recluster_period: int
    transport: Optional[TransportOptions]

    def __post_init__(self) -> None:
        if self.recluster_period < 1:
            raise ValueError("ADAPT.PSEUDO_LABEL.RECLUSTER_PERIOD must be >= 1, got "
                             f"{self.recluster_period}")

    def transports(self, mode: str) -> bool:
        """Whether labels are transported per ``mode`` (``"epoch"`` or ``"batch"``)."""
        return self.transport is not None and self.transport.mode == mode

    @classmethod
    def from_config(cls, m) -> "RoundOptions":
        """From an ADAPT.PSEUDO_LABEL section."""
        return cls(m.RECLUSTER_PERIOD, TransportOptions.from_config(m))


@dataclass(frozen=True)
class MixtureOptions:
    """A labelled source PK batch in every target forward pass (``enabled``) of
    ``batch_size`` images (0: the target batch size); ``domain_bn``: the mixed batch's source
    and target rows go through their own BatchNorms (needs ``enabled``)."""

    enabled: bool
    batch_size: int
    domain_bn: bool

    def __post_init__(self) -> None:
        if self.domain_bn and not self.enabled:
            raise ValueError("ADAPT.PSEUDO_LABEL.DSBN needs ADAPT.PSEUDO_LABEL.MIXTURE True "
                             "(source and target images in one forward pass)")

    @classmethod
    def from_config(cls, m) -> "MixtureOptions":
        """From an ADAPT.PSEUDO_LABEL section."""
        return cls(m.MIXTURE, m.SOURCE_IMS_PER_BATCH, m.DSBN)


@dataclass(frozen=True)
class TeacherOptions:
    """A mean teacher (``enabled``): the EMA of the model with ``momentum`` (``ramp``: alpha
    = min(1 - 1 / (step + 1), momentum)) gives the pseudo-labels and is evaluated."""

    enabled: bool
    momentum: float
    ramp: bool

    @classmethod
    def from_config(cls, m) -> "TeacherOptions":
        """From an ADAPT.PSEUDO_LABEL section."""
        return cls(m.MEAN_TEACHER, m.TEACHER_MOMENTUM, m.TEACHER_RAMP)


@dataclass(frozen=True)
class BatchOptions:
    """Target PK batches: ``batch_size`` images (per rank) of ``num_instances`` per label,
    loaded by ``num_workers`` workers, shuffled from ``seed`` + epoch."""

    batch_size: int
    num_instances: int
    num_workers: int
    seed: int
