"""Domain-specific BatchNorm: conversion, per-domain statistics after mixed training, the
target's statistics at evaluation and in a plain model loaded from the adapted weights."""
import pytest
import torch
from torch import nn

from uda_reid.models.domain_bn import (DomainBatchNorm1d, DomainBatchNorm2d,
                                       convert_domain_batchnorm, domain_sections,
                                       other_domain_modules)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
                         nn.BatchNorm1d(5))


def test_conversion_keeps_the_function_and_lists_the_training_only_modules():
    net = small_net().eval()
    x = torch.randn(6, 3, 8, 8)
    before = net(x)
    assert convert_domain_batchnorm(net) == 2
    assert isinstance(net[1], DomainBatchNorm2d) and isinstance(net[6], DomainBatchNorm1d)
    assert torch.allclose(net(x), before)
    assert other_domain_modules(net) == ("1.other_domains", "6.other_domains")
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        convert_domain_batchnorm(nn.Sequential(nn.SyncBatchNorm(3)))


def test_mixed_training_keeps_two_sets_of_statistics_and_evaluation_uses_the_target():
    net = small_net()
    convert_domain_batchnorm(net)
    target, source = torch.randn(4, 3, 8, 8), 3.0 + 2.0 * torch.randn(6, 3, 8, 8)
    net.train()
    with domain_sections(net, [("target", 4), ("source", 6)]):
        net_mixed = net(torch.cat([target, source]))
    bn, src = net[1], net[1].other_domains["source"]
    assert bn.num_batches_tracked == 1 and src.num_batches_tracked == 1
    # each set moved towards its own domain's channel means (momentum 0.1 from zero)
    features = net[0](torch.cat([target, source])).detach()
    expected_t = 0.1 * features[:4].mean(dim=(0, 2, 3))
    expected_s = 0.1 * features[4:].mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected_t, atol=1e-6)
    assert torch.allclose(src.running_mean, expected_s, atol=1e-6)
    assert (bn.running_mean - src.running_mean).abs().max() > 0.1
    # the target rows of the mixed pass equal a target-only pass (own batch statistics)
    fresh = small_net()
    convert_domain_batchnorm(fresh)
    fresh.train()
    assert torch.allclose(net_mixed[:4], fresh(target), atol=1e-5)
    # evaluation: every row through the target's statistics, as a plain model loaded from
    # the adapted weights without the other domains
    net.eval()
    plain = small_net().eval()
    state = {k: v for k, v in net.state_dict().items() if ".other_domains." not in k}
    plain.load_state_dict(state)
    assert torch.allclose(net(source), plain(source), atol=1e-6)
    assert torch.allclose(plain[1].running_mean, bn.running_mean)
    with domain_sections(net, [("source", 6)]):
        out = net(source)
    assert not torch.allclose(out, plain(source), atol=1e-3)


def test_sections_must_cover_the_batch_and_name_known_domains():
    net = small_net()
    convert_domain_batchnorm(net)
    with pytest.raises(ValueError, match="cover 5 rows"):
        with domain_sections(net, [("target", 2), ("source", 3)]):
            net(torch.randn(6, 3, 8, 8))
    with pytest.raises(KeyError, match="unknown domains"):
        with domain_sections(net, [("other", 6)]):
            pass
    with pytest.raises(ValueError, match="no domain-specific"):
        with domain_sections(small_net(), [("target", 6)]):
            pass
