"""Pooling, embedding heads, classifier layers and the assembled ReIDModel."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.config import load_config
from uda_reid.config.sections.data import InputConfig
from uda_reid.config.sections.model import BackboneConfig, HeadsConfig, ModelConfig, PoolingConfig
from uda_reid.models import ReIDModel, build_model, load_pretrained
from uda_reid.models.classifiers import (ArcFace, CircleSoftmax, CosFace, CosineClassifier,
                                         LinearClassifier)
from uda_reid.models.heads.embedding import EmbeddingHead
from uda_reid.models.pooling import AttentionPool, AvgPool, GeMPool, MaxPool
from uda_reid.models.registry import CLS_LAYERS, HEADS, POOLINGS

torch.manual_seed(0)
MAP_POOLINGS = ("avg", "max", "gem", "attention")
OWN_HEADS = ("bnneck", "linear", "reduction")


def cfg_with(*pairs):
    return load_config(None, [str(p) for p in pairs])


def model_with(**heads):
    """A MODEL section (no root config) whose HEADS section has the given keys."""
    return ModelConfig(HEADS=HeadsConfig(**heads))


@pytest.mark.parametrize("name", MAP_POOLINGS)
def test_map_poolings_reduce_positions_and_reject_tokens(name):
    pool = POOLINGS.get(name)(PoolingConfig(), 8)
    assert pool(torch.rand(2, 8, 4, 3)).shape == (2, 8)
    with pytest.raises(ValueError, match="MODEL.POOLING.NAME identity"):
        pool(torch.rand(2, 5, 8))


def test_every_registered_pooling_is_covered():
    assert set(POOLINGS) == set(MAP_POOLINGS) | {"identity"}
    assert POOLINGS.get("flatten") is POOLINGS.get("identity")


def test_identity_pooling_passes_vectors_and_tokens_and_flattens_1x1_maps():
    pool = POOLINGS.get("identity")(PoolingConfig(), 8)
    vectors, tokens = torch.randn(2, 8), torch.randn(2, 5, 8)
    assert pool(vectors) is vectors and pool(tokens) is tokens
    assert torch.equal(pool(vectors[:, :, None, None]), vectors)
    with pytest.raises(ValueError, match="choose avg"):
        pool(torch.randn(2, 8, 4, 3))


def test_avg_and_max_match_their_definitions():
    x = torch.randn(2, 3, 4, 5)
    flat = x.reshape(2, 3, -1)
    assert torch.allclose(AvgPool()(x), flat.sum(-1) / 20)
    assert torch.equal(MaxPool()(x), flat.max(-1).values)


def test_gem_is_avg_at_p1_and_approaches_max_for_large_p():
    x = torch.rand(2, 5, 4, 3) + 0.1
    assert torch.allclose(GeMPool(1.0)(x), AvgPool()(x), atol=1e-6)
    top = MaxPool()(x)
    gaps = []
    for p in (3.0, 30.0, 300.0):
        gem = GeMPool(p)(x)
        # mean of 12 positions: max * 12^(-1/p) <= GeM_p <= max
        assert (gem <= top + 1e-5).all() and (gem >= top * 12 ** (-1 / p) - 1e-5).all()
        gaps.append((top - gem).abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01


def test_gem_p_is_learnable_and_clamps_negatives():
    pool = GeMPool(3.0, learnable=True)
    x = torch.rand(2, 4, 3, 3) + 0.5
    pool(x).sum().backward()
    assert pool.p.grad is not None and pool.p.grad.abs() > 0
    assert not GeMPool(3.0, learnable=False).p.requires_grad
    neg = -torch.ones(1, 2, 2, 2)
    assert torch.allclose(GeMPool(3.0)(neg), torch.full((1, 2), 1e-6), rtol=1e-3)


def test_attention_pool_starts_uniform_then_weights_by_softmax_score():
    x = torch.randn(2, 5, 4, 3)
    pool = AttentionPool(5)
    assert torch.allclose(pool(x), x.mean(dim=(2, 3)), atol=1e-6)
    nn.init.normal_(pool.score.weight)
    scores = torch.einsum("nchw,c->nhw", x, pool.score.weight.view(-1)) + pool.score.bias
    w = torch.softmax(scores.reshape(2, -1), dim=1)
    want = (x.reshape(2, 5, -1) * w[:, None]).sum(-1)
    assert torch.allclose(pool(x), want, atol=1e-5)


def test_bnneck_training_dict_and_eval_embedding_use_batch_then_running_stats():
    head = EmbeddingHead(6, LinearClassifier(6, 3), with_bnneck=True, neck_feat="after")
    x = torch.randn(8, 6)
    out = head(x)
    assert torch.equal(out["features"], x)
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(out["embedding"], expected, atol=1e-5)
    assert torch.allclose(out["logits"], out["embedding"] @ head.classifier.weight.t())
    assert not head.bnneck.bias.requires_grad and torch.equal(head.bnneck.bias, torch.zeros(6))
    assert torch.allclose(head.bnneck.running_mean, 0.1 * x.mean(0), atol=1e-6)
    head.eval()
    bn = head.bnneck
    eval_expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5) * bn.weight
    assert torch.allclose(head(x), eval_expected, atol=1e-5)
    head.neck_feat = "before"
    assert torch.equal(head(x), x)


def test_bnneck_rejects_unknown_neck_feat_and_token_input():
    with pytest.raises(ValueError, match="NECK_FEAT"):
        EmbeddingHead(6, LinearClassifier(6, 3), neck_feat="middle")
    with pytest.raises(ValueError, match="pooled vectors"):
        EmbeddingHead(6, LinearClassifier(6, 3))(torch.randn(4, 2, 6))


@pytest.mark.parametrize("head_name", OWN_HEADS)
@pytest.mark.parametrize("cls_layer", ["linear", "cosine", "arcface", "cosface", "circle"])
def test_heads_give_training_dict_and_eval_embedding(head_name, cls_layer):
    opts = model_with(NAME=head_name, CLS_LAYER=cls_layer, EMBEDDING_DIM=16, SCALE=16.0,
                      MARGIN=0.2)
    head = HEADS.get(head_name)(opts, 32, 5)
    out = head(torch.randn(6, 32), torch.tensor([0, 1, 2, 3, 4, 0]))
    assert set(out) == {"logits", "features", "embedding"}
    assert out["logits"].shape == (6, 5)
    assert out["features"].shape == out["embedding"].shape == (6, 16)
    head.eval()
    assert head(torch.randn(3, 32)).shape == (3, 16)


def test_linear_head_has_no_bnneck_and_reduction_head_defaults_to_512():
    head = HEADS.get("linear")(ModelConfig(), 32, 5)
    out = head(torch.randn(4, 32))
    assert torch.equal(out["features"], out["embedding"])
    assert HEADS.get("reduction")(ModelConfig(), 64, 5).out_dim == 512
    assert set(HEADS) >= set(OWN_HEADS)


def test_every_classifier_layer_is_registered():
    assert set(CLS_LAYERS) >= {"linear", "cosine", "arcface", "cosface", "circle"}
    assert CLS_LAYERS.get("circlesoftmax") is CLS_LAYERS.get("circle")


def hand_logit(kind, c, is_target, s, m):
    """One logit from its cosine by the papers' formulas (FastReID's CircleSoftmax)."""
    if not is_target:
        if kind == "circle":
            return s * max(c + m, 0) * (c - m)
        return s * c
    if kind == "arcface":
        theta = math.acos(c)
        return s * (math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m))
    if kind == "cosface":
        return s * (c - m)
    if kind == "circle":
        return s * max(1 + m - c, 0) * (c - (1 - m))
    return s * c


@pytest.mark.parametrize("kind,cls", [("arcface", ArcFace), ("cosface", CosFace),
                                      ("circle", CircleSoftmax), ("cosine", CosineClassifier)])
def test_margin_logits_match_hand_computation(kind, cls):
    torch.manual_seed(1)
    s, m = 10.0, 0.5
    layer = cls(6, 3, s, m)
    x = torch.randn(5, 6)
    x[4] = -layer.weight[1].detach() + 0.05  # theta near pi: ArcFace's fallback branch
    targets = torch.tensor([0, 2, 1, 2, 1])
    cos = (F.normalize(x, dim=1) @ F.normalize(layer.weight, dim=1).t()).tolist()
    logits = layer(x, targets)
    for i in range(5):
        for j in range(3):
            want = hand_logit(kind, cos[i][j], j == targets[i], s, m)
            assert logits[i, j].item() == pytest.approx(want, abs=1e-4)
    assert torch.allclose(layer(x), s * torch.tensor(cos), atol=1e-5)  # no margin w/o labels


def test_linear_classifier_is_bias_free():
    layer = LinearClassifier(4, 3)
    x = torch.randn(2, 4)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert torch.allclose(layer(x, torch.tensor([0, 1])), x @ layer.weight.t())


class SideInfoBackbone(nn.Module):
    """A backbone that records the camera ids it receives."""

    uses_side_info = True
    out_channels = 3

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x, camids=None):
        self.seen = camids
        return x


def test_reid_model_passes_camids_to_side_info_backbones_and_targets_to_margins():
    opts = model_with(CLS_LAYER="cosface", SCALE=4.0, MARGIN=0.5)
    backbone = SideInfoBackbone()
    model = ReIDModel(backbone, POOLINGS.get("avg")(opts.POOLING, 3),
                      HEADS.get("bnneck")(opts, 3, 2))
    images, camids, pids = torch.randn(4, 3, 4, 2), torch.tensor([0, 1, 1, 0]), torch.tensor(
        [0, 0, 1, 1])
    out = model(images, camids, pids)
    assert torch.equal(backbone.seen, camids)
    plain = model.head.classifier(out["embedding"])
    onehot = F.one_hot(pids, 2).float()
    assert torch.allclose(out["logits"], plain - 4 * 0.5 * onehot, atol=1e-5)
    model.eval()
    assert model(images, camids).shape == (4, 3)


def test_build_model_from_config_and_model_weights_loading(tmp_path):
    cfg = cfg_with("MODEL.BACKBONE.NAME", "resnet18", "MODEL.POOLING.NAME", "gem",
                   "MODEL.HEADS.EMBEDDING_DIM", 64)
    model = build_model(cfg, 7)
    out = model(torch.randn(4, 3, 64, 32))
    assert out["logits"].shape == (4, 7) and out["embedding"].shape == (4, 64)
    assert isinstance(model.pooling, GeMPool)
    torch.save({"model": model.state_dict(), "iteration": 10}, tmp_path / "ckpt.pth")
    loaded = build_model(load_config(None, [
        "MODEL.BACKBONE.NAME", "resnet18", "MODEL.POOLING.NAME", "gem",
        "MODEL.HEADS.EMBEDDING_DIM", "64", "MODEL.WEIGHTS", str(tmp_path / "ckpt.pth")]), 7)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    report = load_pretrained(build_model(cfg, 3), tmp_path / "ckpt.pth")
    assert list(report.mismatched) == ["head.classifier.weight"]
    with pytest.raises(ValueError, match="number of training classes"):
        build_model(cfg, 0)


def test_model_from_sections_alone_equals_the_root_config_entry_point():
    opts = ModelConfig(BACKBONE=BackboneConfig(NAME="resnet18"),
                       POOLING=PoolingConfig(NAME="gem", GEM_P=2.0),
                       HEADS=HeadsConfig(EMBEDDING_DIM=16, CLS_LAYER="arcface", SCALE=8.0))
    torch.manual_seed(5)
    plain = ReIDModel.from_config(opts, InputConfig(), 4)
    torch.manual_seed(5)
    entry = build_model(cfg_with("MODEL.BACKBONE.NAME", "resnet18", "MODEL.POOLING.NAME", "gem",
                                 "MODEL.POOLING.GEM_P", 2, "MODEL.HEADS.EMBEDDING_DIM", 16,
                                 "MODEL.HEADS.CLS_LAYER", "arcface", "MODEL.HEADS.SCALE", 8), 4)
    assert isinstance(plain.head.classifier, ArcFace) and plain.head.classifier.scale == 8.0
    assert float(plain.pooling.p.detach()) == 2.0 and plain.head.out_dim == 16
    assert plain.state_dict().keys() == entry.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, entry.state_dict()[key]), key
