"""Domain-specific BatchNorm (DSBN): one set of BatchNorm statistics and affine parameters per
domain, for methods that forward source and target images in one batch.

A converted layer *is* a BatchNorm1d/2d whose own parameters and buffers belong to the main
domain (the target, the one used at test time), plus one BatchNorm per other domain in
``other_domains``. So the state-dict keys of the main domain are those of the plain layer: a
plain model loads an adapted checkpoint (leaving out the ``other_domains`` modules, listed by
:func:`other_domain_modules`) and evaluates with the target's statistics.

Which rows belong to which domain is set for a forward pass with :func:`domain_sections`
(consecutive blocks of rows, e.g. the target batch then the source batch); without it every
row goes through the main domain (evaluation, feature extraction). UDAStrongBaseline
(``UDAsbs/models/dsbn.py``, ``convert_dsbn``) splits each batch into a source and a target half
the same way and evaluates with the target's BatchNorm.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from uda_reid.utils.errors import UnknownNameError


def _device(layer: nn.Module) -> torch.device:
    tensors = itertools.chain(layer.parameters(recurse=False), layer.buffers(recurse=False))
    return next((t.device for t in tensors), torch.device("cpu"))


class _DomainBatchNormMixin:
    """Forward of a domain-specific BatchNorm (mixed into BatchNorm1d / BatchNorm2d)."""

    main_domain: str
    sections: Optional[Sequence[Tuple[str, int]]]

    def init_domains(self, main_domain: str, other_domains: Sequence[str]) -> None:
        if main_domain in other_domains or len(set(other_domains)) != len(other_domains):
            raise ValueError(f"domain names must be distinct, got {main_domain!r} and "
                             f"{list(other_domains)}")
        self.main_domain = main_domain
        self.sections = None
        plain = self._plain_copy()
        self.other_domains = nn.ModuleDict({d: copy.deepcopy(plain) for d in other_domains})

    def _plain_copy(self) -> nn.Module:
        base = nn.BatchNorm2d if isinstance(self, nn.BatchNorm2d) else nn.BatchNorm1d
        layer = base(self.num_features, self.eps, self.momentum, self.affine,
                     self.track_running_stats)
        layer.load_state_dict(self.state_dict())  # before other_domains exist: main only
        if self.affine:
            layer.weight.requires_grad_(self.weight.requires_grad)
            layer.bias.requires_grad_(self.bias.requires_grad)
        return layer.to(_device(self))

    @property
    def domains(self) -> Tuple[str, ...]:
        return (self.main_domain, *self.other_domains.keys())

    def _domain_forward(self, domain: str, x: torch.Tensor) -> torch.Tensor:
        if domain == self.main_domain:
            return super().forward(x)
        if domain not in self.other_domains:
            raise UnknownNameError(f"DSBN: unknown domain {domain!r}; domains are {self.domains}")
        return self.other_domains[domain](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sections is None:
            return super().forward(x)
        sizes = [n for _, n in self.sections]
        if sum(sizes) != x.shape[0]:
            raise ValueError(f"DSBN: domain sections {list(self.sections)} cover {sum(sizes)} "
                             f"rows, the batch has {x.shape[0]}")
        parts = torch.split(x, sizes)
        return torch.cat([self._domain_forward(d, p) for (d, _), p in zip(self.sections, parts)])


class DomainBatchNorm1d(_DomainBatchNormMixin, nn.BatchNorm1d):
    """Domain-specific BatchNorm over (N, C) or (N, C, L)."""


class DomainBatchNorm2d(_DomainBatchNormMixin, nn.BatchNorm2d):
    """Domain-specific BatchNorm over (N, C, H, W)."""


DOMAIN_BN_TYPES = (DomainBatchNorm1d, DomainBatchNorm2d)


def _convert(layer: nn.Module, main_domain: str, other_domains: Sequence[str]) -> nn.Module:
    cls = DomainBatchNorm2d if type(layer) is nn.BatchNorm2d else DomainBatchNorm1d
    new = cls(layer.num_features, layer.eps, layer.momentum, layer.affine,
              layer.track_running_stats)
    new.load_state_dict(layer.state_dict())
    if layer.affine:
        new.weight.requires_grad_(layer.weight.requires_grad)
        new.bias.requires_grad_(layer.bias.requires_grad)
    new = new.to(_device(layer))
    new.train(layer.training)
    new.init_domains(main_domain, other_domains)
    return new


def convert_domain_batchnorm(model: nn.Module, main_domain: str = "target",
                             other_domains: Sequence[str] = ("source",)) -> int:
    """Replace every BatchNorm1d/2d of ``model`` in place by its domain-specific form, every
    domain starting from the layer's current statistics and affine parameters; returns the
    number of layers converted. Other BatchNorm kinds (SyncBatchNorm, 3d) raise."""
    count = 0
    for name, child in list(model.named_children()):
        if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
            setattr(model, name, _convert(child, main_domain, other_domains))
            count += 1
        elif isinstance(child, nn.modules.batchnorm._BatchNorm) and \
                not isinstance(child, DOMAIN_BN_TYPES):
            raise ValueError(f"DSBN: cannot convert {type(child).__name__} '{name}' (only "
                             "BatchNorm1d/BatchNorm2d)")
        elif not isinstance(child, DOMAIN_BN_TYPES):
            count += convert_domain_batchnorm(child, main_domain, other_domains)
    return count


def domain_batchnorms(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, layer) of every domain-specific BatchNorm of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DOMAIN_BN_TYPES)]


def other_domain_modules(model: nn.Module) -> Tuple[str, ...]:
    """Names of the modules holding the non-main domains' BatchNorms (training-only: a plain
    model is loaded without them)."""
    return tuple(f"{n}.other_domains" if n else "other_domains"
                 for n, _ in domain_batchnorms(model))


@contextlib.contextmanager
def domain_sections(model: nn.Module, sections: Sequence[Tuple[str, int]]) -> Iterator[None]:
    """Within the block, forward passes of ``model`` send consecutive rows to the given
    domains, e.g. ``[("target", 64), ("source", 32)]``."""
    layers = [m for _, m in domain_batchnorms(model)]
    if not layers:
        raise ValueError("domain_sections: the model has no domain-specific BatchNorm "
                         "(convert it with convert_domain_batchnorm first)")
    for layer in layers:
        unknown = {d for d, _ in sections} - set(layer.domains)
        if unknown:
            raise UnknownNameError(f"DSBN: unknown domains {sorted(unknown)}; domains are "
                                   f"{layer.domains}")
    previous = [layer.sections for layer in layers]
    for layer in layers:
        layer.sections = tuple(sections)
    try:
        yield
    finally:
        for layer, saved in zip(layers, previous):
            layer.sections = saved
