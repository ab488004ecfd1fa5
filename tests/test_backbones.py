"""CNN backbones: map shapes, last stride, IBN-a placement, non-local blocks, weight loading."""
import pytest
import torch
import torchvision
from torch import nn

from uda_reid.config import load_config
from uda_reid.models import load_pretrained
from uda_reid.models.backbones.resnet import ResNetBackbone
from uda_reid.models.layers import IBN, NonLocalBlock
from uda_reid.models.registry import BACKBONES
from uda_reid.models.weights import read_state_dict

torch.manual_seed(0)


def cfg_with(*pairs):
    return load_config(None, [str(p) for p in pairs])


def build(name, *pairs):
    cfg = cfg_with("MODEL.BACKBONE.NAME", name, *pairs)
    return BACKBONES.get(name)(cfg.MODEL, cfg.INPUT).eval()


def test_every_resnet_resnext_ibn_and_resnest_name_is_registered():
    depths = [f"resnet{d}" for d in (18, 34, 50, 101, 152)]
    expected = depths + [f"{n}_ibn_a" for n in depths] + [
        "resnext50_32x4d", "resnext101_32x8d", "resnext50_32x4d_ibn_a", "resnest50",
        "resnest101"]
    assert set(expected) <= set(BACKBONES)


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512),
                                           ("resnet50", 2048), ("resnet18_ibn_a", 512),
                                           ("resnext50_32x4d", 2048), ("resnest50", 2048)])
def test_backbone_returns_map_with_out_channels_at_h_over_16(name, channels):
    backbone = build(name)
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 32))
    assert backbone.out_channels == channels
    assert out.shape == (2, channels, 4, 2)


@pytest.mark.parametrize("name,size", [("resnet18", (128, 64)), ("resnet50", (64, 32)),
                                       ("resnest50", (64, 32))])
def test_last_stride_one_doubles_the_map(name, size):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        s1 = build(name, "MODEL.BACKBONE.LAST_STRIDE", 1)(x).shape[-2:]
        s2 = build(name, "MODEL.BACKBONE.LAST_STRIDE", 2)(x).shape[-2:]
    assert s1 == (size[0] // 16, size[1] // 16)
    assert s2 == (size[0] // 32, size[1] // 32)


def test_bad_last_stride_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="LAST_STRIDE"):
        build("resnet18", "MODEL.BACKBONE.LAST_STRIDE", 3)


@pytest.mark.parametrize("name,pairs", [("resnet50_ibn_a", ()),
                                        ("resnet18", ("MODEL.BACKBONE.WITH_IBN", True))])
def test_ibn_a_puts_instance_norm_on_half_of_bn1_in_layers_1_to_3_only(name, pairs):
    backbone = build(name, *pairs)
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3):
        for block in layer:
            assert isinstance(block.bn1, IBN)
            assert isinstance(block.bn1.IN, nn.InstanceNorm2d) and block.bn1.IN.affine
            assert block.bn1.IN.num_features * 2 == block.conv1.out_channels
            assert not isinstance(block.bn2, IBN)
    assert not any(isinstance(m, (IBN, nn.InstanceNorm2d)) for m in backbone.layer4.modules())
    assert isinstance(backbone.bn1, nn.BatchNorm2d)


def test_ibn_normalises_first_half_per_instance_and_second_half_per_batch():
    ibn = IBN(6).train()
    x = torch.randn(4, 6, 5, 3) * 3 + 2
    out = ibn(x)
    a, b = x[:, :3], x[:, 3:]
    inst = (a - a.mean((2, 3), keepdim=True)) / torch.sqrt(a.var((2, 3), unbiased=False,
                                                                 keepdim=True) + 1e-5)
    batch = (b - b.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        b.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(out[:, :3], inst, atol=1e-4)
    assert torch.allclose(out[:, 3:], batch, atol=1e-4)


def test_non_local_blocks_follow_fastreid_placement_for_resnet50():
    backbone = build("resnet50", "MODEL.BACKBONE.WITH_NL", True)
    counts = {name: len(blocks) for name, blocks in backbone.non_local.items()}
    assert counts == {"layer2": 2, "layer3": 3}
    assert backbone.non_local["layer3"][0].theta.in_channels == 1024
    order = []
    named = {**{f"layer3.{i}": b for i, b in enumerate(backbone.layer3)},
             **{f"nl3.{i}": b for i, b in enumerate(backbone.non_local["layer3"])}}
    for name, module in named.items():
        module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    with torch.no_grad():
        backbone(torch.randn(1, 3, 64, 32))
    assert order == ["layer3.0", "layer3.1", "layer3.2", "layer3.3", "nl3.0", "layer3.4",
                     "nl3.1", "layer3.5", "nl3.2"]


def test_non_local_backbone_keeps_torchvision_names_and_starts_as_identity():
    reference = torchvision.models.resnet18(weights=None)
    plain = ResNetBackbone("resnet18")
    with_nl = ResNetBackbone("resnet18", with_nl=True)
    state = reference.state_dict()
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    missing, unexpected = with_nl.load_state_dict(state, strict=False)
    assert unexpected == ["fc.weight", "fc.bias"]
    assert missing and all(k.startswith("non_local.") for k in missing)
    x = torch.randn(2, 3, 64, 32)
    plain.eval(), with_nl.eval()
    with torch.no_grad():
        assert torch.allclose(with_nl(x), plain(x), atol=1e-5)


def test_non_local_block_matches_the_dot_product_definition():
    torch.manual_seed(3)
    block = NonLocalBlock(4).eval()
    nn.init.normal_(block.out[1].weight)
    nn.init.normal_(block.out[1].running_mean)
    x = torch.randn(2, 4, 3, 2)
    with torch.no_grad():
        got = block(x)
        theta, phi, g = block.theta(x), block.phi(x), block.g(x)  # (N, C', H, W)
        y = torch.zeros_like(theta)
        positions = [(i, j) for i in range(3) for j in range(2)]
        for n in range(2):
            for (i, j) in positions:
                for (k, l) in positions:
                    f = (theta[n, :, i, j] * phi[n, :, k, l]).sum() / len(positions)
                    y[n, :, i, j] += f * g[n, :, k, l]
        want = x + block.out(y)
    assert torch.allclose(got, want, atol=1e-5)


def test_resnest_rejects_ibn_and_non_local_options():
    with pytest.raises(ValueError, match="WITH_IBN / WITH_NL"):
        build("resnest50", "MODEL.BACKBONE.WITH_NL", True)


def test_sync_bn_norm_option_converts_and_unknown_norm_fails():
    backbone = build("resnet18", "MODEL.BACKBONE.NORM", "syncBN")
    assert isinstance(backbone.bn1, nn.SyncBatchNorm)
    assert not any(type(m) is nn.BatchNorm2d for m in backbone.modules())
    with pytest.raises(ValueError, match="MODEL.BACKBONE.NORM"):
        build("resnet18", "MODEL.BACKBONE.NORM", "GN")


def test_pretrained_loader_reports_missing_unexpected_and_mismatched(tmp_path):
    backbone = ResNetBackbone("resnet18")
    state = {f"module.{k}": v.clone() + 1 for k, v in backbone.state_dict().items()
             if k.startswith("layer1.")}
    state["module.fc.weight"] = torch.zeros(3, 512)
    state["module.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.pth")
    report = load_pretrained(backbone, tmp_path / "w.pth")
    assert report.unexpected == ["fc.weight"]
    assert report.mismatched == {"conv1.weight": "(64, 3, 3, 3) vs (64, 3, 7, 7)"}
    assert "conv1.weight" in report.missing and "layer2.0.conv1.weight" in report.missing
    assert sorted(report.loaded) == sorted(k[len("module."):] for k in state
                                           if k.startswith("module.layer1."))
    assert not any(k.startswith("layer1.") for k in report.missing)
    key = "layer1.0.conv1.weight"
    assert torch.equal(backbone.state_dict()[key], state[f"module.{key}"])
    assert "unexpected (1): fc.weight" in str(report)


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"model": s},
                                  lambda s: {"state_dict": {"model": s}, "iteration": 5}])
def test_read_state_dict_accepts_common_layouts(tmp_path, wrap):
    state = {"module.a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    torch.save(wrap(state), tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert set(got) == {"a.weight", "b.bias"}


def test_weight_files_fail_clearly_when_absent_or_without_tensors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        read_state_dict(tmp_path / "missing.pth")
    torch.save({"epoch": 3, "config": {"x": 1}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth: no state dict"):
        read_state_dict(tmp_path / "bad.pth")


def test_backbone_pretrain_path_loads_through_the_config(tmp_path):
    source = ResNetBackbone("resnet18")
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    backbone = build("resnet18", "MODEL.BACKBONE.PRETRAIN", True,
                     "MODEL.BACKBONE.PRETRAIN_PATH", tmp_path / "r18.pth")
    assert torch.equal(backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match="PRETRAIN_PATH is empty"):
        build("resnet18", "MODEL.BACKBONE.PRETRAIN", True)


def test_resnest_pretrain_path_uses_timm_parameter_names(tmp_path):
    source = build("resnest50")
    torch.save(source.net.state_dict(), tmp_path / "resnest50d.pth")
    backbone = build("resnest50", "MODEL.BACKBONE.PRETRAIN", True,
                     "MODEL.BACKBONE.PRETRAIN_PATH", tmp_path / "resnest50d.pth")
    assert torch.equal(backbone.net.conv1[0].weight, source.net.conv1[0].weight)
