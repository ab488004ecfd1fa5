"""Backbones, pooling, heads and classifier layers: shapes and defining behaviour."""
import math

import pytest
import torch
import torch.nn.functional as F

from uda_reid.config import load_config
from uda_reid.models import build_model, load_pretrained
from uda_reid.models.classifiers import ArcFace, CircleSoftmax, CosFace
from uda_reid.models.heads.embedding import EmbeddingHead
from uda_reid.models.classifiers import LinearClassifier
from uda_reid.models.layers import IBN, NonLocalBlock
from uda_reid.models.pooling import AttentionPool, AvgPool, GeMPool, IdentityPool, MaxPool
from uda_reid.models.registry import BACKBONES, HEADS, POOLINGS

torch.manual_seed(0)


def cfg_with(*pairs):
    return load_config(None, list(pairs))


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512),
                                           ("resnet50", 2048), ("resnet18_ibn_a", 512),
                                           ("resnext50_32x4d", 2048), ("resnest50", 2048)])
def test_backbone_map_shapes(name, channels):
    backbone = BACKBONES.get(name)(cfg_with("MODEL.BACKBONE.NAME", name)).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 32))
    assert backbone.out_channels == channels
    assert out.shape == (1, channels, 4, 2)  # last stride 1: H/16, W/16


def test_all_resnet_depths_and_ibn_variants_are_registered():
    for depth in (18, 34, 50, 101, 152):
        assert f"resnet{depth}" in BACKBONES and f"resnet{depth}_ibn_a" in BACKBONES
    assert "resnext101_32x8d" in BACKBONES


def test_last_stride_one_doubles_the_map():
    s1 = BACKBONES.get("resnet18")(cfg_with("MODEL.BACKBONE.LAST_STRIDE", "1")).eval()
    s2 = BACKBONES.get("resnet18")(cfg_with("MODEL.BACKBONE.LAST_STRIDE", "2")).eval()
    x = torch.randn(1, 3, 128, 64)
    with torch.no_grad():
        assert s1(x).shape[-2:] == (8, 4) and s2(x).shape[-2:] == (4, 2)


def test_ibn_a_puts_instance_norm_in_layers_1_to_3_only():
    backbone = BACKBONES.get("resnet50_ibn_a")(cfg_with())
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3):
        assert all(isinstance(block.bn1, IBN) for block in layer)
    assert not any(isinstance(m, IBN) for m in backbone.layer4.modules())
    ibn = backbone.layer1[0].bn1
    assert ibn.IN.num_features + ibn.BN.num_features == 64


def test_non_local_blocks_start_as_identity_and_sit_in_layers_2_and_3():
    backbone = BACKBONES.get("resnet50")(cfg_with("MODEL.BACKBONE.WITH_NL", "True"))
    counts = [sum(isinstance(m, NonLocalBlock) for m in layer.modules())
              for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)]
    assert counts == [0, 2, 3, 0]
    block = NonLocalBlock(8).eval()
    x = torch.randn(2, 8, 4, 3)
    assert torch.allclose(block(x), x)


def test_gem_is_avg_at_p1_and_approaches_max_for_large_p():
    x = torch.rand(2, 5, 4, 3) + 0.1
    assert torch.allclose(GeMPool(1.0)(x), AvgPool()(x), atol=1e-6)
    assert torch.allclose(GeMPool(60.0)(x), MaxPool()(x), rtol=0.05)
    assert GeMPool(3.0, learnable=True).p.requires_grad


def test_attention_pool_starts_uniform_and_identity_passes_tokens():
    x = torch.randn(2, 5, 4, 3)
    assert torch.allclose(AttentionPool(5)(x), x.mean(dim=(2, 3)), atol=1e-6)
    tokens = torch.randn(2, 5, 7)
    assert IdentityPool()(tokens) is tokens
    assert set(POOLINGS) >= {"avg", "max", "gem", "attention", "identity"}


def test_bnneck_training_and_eval_outputs():
    head = EmbeddingHead(6, LinearClassifier(6, 3), with_bnneck=True, neck_feat="after")
    x = torch.randn(8, 6)
    out = head(x)
    assert torch.equal(out["features"], x)
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(out["embedding"], expected, atol=1e-5)
    assert torch.allclose(out["logits"], out["embedding"] @ head.classifier.weight.t())
    assert not head.bnneck.bias.requires_grad
    head.eval()
    bn = head.bnneck
    eval_expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5) * bn.weight
    assert torch.allclose(head(x), eval_expected, atol=1e-5)
    head.neck_feat = "before"
    assert torch.equal(head(x), x)


def test_heads_registered_and_reduction_dimension():
    assert set(HEADS) >= {"bnneck", "linear", "reduction"}
    model = build_model(cfg_with("MODEL.BACKBONE.NAME", "resnet18", "MODEL.HEADS.NAME",
                                 "reduction", "MODEL.HEADS.EMBEDDING_DIM", "64"), 5).eval()
    assert model(torch.randn(2, 3, 64, 32)).shape == (2, 64)


def test_arcface_cosface_circle_logits_match_hand_computation():
    torch.manual_seed(1)
    x, targets = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    s, m = 10.0, 0.3
    for cls in (ArcFace, CosFace, CircleSoftmax):
        layer = cls(6, 3, s, m)
        cos = F.normalize(x, dim=1) @ F.normalize(layer.weight, dim=1).t()
        logits = layer(x, targets)
        for i in range(4):
            for j in range(3):
                c = cos[i, j].item()
                if cls is ArcFace:
                    want = s * (math.cos(math.acos(c) + m) if j == targets[i] else c)
                elif cls is CosFace:
                    want = s * (c - m if j == targets[i] else c)
                elif j == targets[i]:
                    want = s * max(1 + m - c, 0) * (c - (1 - m))
                else:
                    want = s * max(c + m, 0) * (c - m)
                assert logits[i, j].item() == pytest.approx(want, abs=1e-4)
        assert torch.allclose(layer(x), s * cos, atol=1e-6)  # no margin without labels


def test_pretrained_loader_reports_missing_unexpected_and_mismatched(tmp_path):
    model = build_model(cfg_with("MODEL.BACKBONE.NAME", "resnet18"), 4)
    state = {f"module.{k}": v.clone() + 1 for k, v in model.backbone.state_dict().items()
             if k.startswith("layer1")}
    state["module.extra.weight"] = torch.zeros(3)
    state["module.conv1.weight"] = torch.zeros(1, 2, 3, 3)
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    report = load_pretrained(model.backbone, tmp_path / "w.pth")
    assert report.unexpected == ["extra.weight"]
    assert "conv1.weight" in report.mismatched and "conv1.weight" in report.missing
    assert all(k.startswith("layer1") for k in report.loaded) and report.loaded
    key = report.loaded[0]
    assert torch.equal(model.backbone.state_dict()[key], state[f"module.{key}"])
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_pretrained(model, tmp_path / "missing.pth")
