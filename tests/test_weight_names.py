"""Pretrained weights by torchvision / timm name: found in fake caches, never downloaded."""
import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from uda_reid.config import load_config
from uda_reid.models.backbones.resnet import ResNetBackbone
from uda_reid.models.registry import BACKBONES


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Empty caches under tmp_path; any download attempt fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail(f"a download was attempted: {args}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


def build(name, *pairs):
    cfg = load_config(None, ["MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.PRETRAIN", "True",
                             *map(str, pairs)])
    return BACKBONES.get(name)(cfg.MODEL, cfg.INPUT).eval()


def write_hf_snapshot(cache, repo, filename, state):
    """The layout huggingface_hub writes: refs/main names the snapshot folder."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0123abcd")
    snapshot = repo_dir / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / filename))


def test_torchvision_name_loads_from_the_torch_hub_cache(tmp_path):
    source = ResNetBackbone("resnet18")
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # torchvision's file name for these weights (basename of their URL), plus a classifier
    # that the backbone does not have
    state = dict(source.state_dict(), **{"fc.weight": torch.zeros(1000, 512)})
    torch.save(state, checkpoints / "resnet18-f37072fd.pth")
    backbone = build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME",
                     "torchvision:ResNet18_Weights.IMAGENET1K_V1")
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_timm_name_loads_from_the_hugging_face_cache(tmp_path):
    source = ResNetBackbone("resnet18")
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    write_hf_snapshot(tmp_path / "hf", "timm/resnet18.tv_in1k", "model.safetensors", state)
    backbone = build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", "timm:resnet18.tv_in1k")
    assert torch.equal(backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(backbone.bn1.running_var, source.bn1.running_var)


def test_absent_torchvision_weights_name_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME",
              "torchvision:ResNet18_Weights.IMAGENET1K_V1")
    message = str(err.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in message and "\n" not in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "PRETRAIN_DOWNLOAD True" in message


def test_absent_timm_weights_name_the_hugging_face_location(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", "timm:resnet18.tv_in1k")
    message = str(err.value)
    assert (f"{tmp_path / 'hf'}/models--timm--resnet18.tv_in1k/snapshots/<revision>/"
            "model.safetensors") in message
    # this timm weight also has a torchvision URL: its torch hub location is named too
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_download_happens_only_when_the_config_asks(monkeypatch, tmp_path):
    calls = []

    def fake_download(url, dst, hash_prefix=None):
        calls.append((url, hash_prefix))
        torch.save(ResNetBackbone("resnet18").state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    name = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    with pytest.raises(FileNotFoundError):
        build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", name)
    assert calls == []
    build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", name, "MODEL.BACKBONE.PRETRAIN_DOWNLOAD",
          "True")
    assert calls == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()


@pytest.mark.parametrize("name,match", [
    ("resnet18.tv_in1k", "must be 'torchvision:"),
    ("torchvision:ResNet18_Weights.NOPE", "torchvision has no weights"),
    ("timm:resnet18.no_such_tag", "timm has no pretrained weights"),
])
def test_bad_weight_names_are_named(name, match):
    with pytest.raises(ValueError, match=match):
        build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", name)


def test_path_and_name_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="both set"):
        build("resnet18", "MODEL.BACKBONE.PRETRAIN_NAME", "timm:resnet18.tv_in1k",
              "MODEL.BACKBONE.PRETRAIN_PATH", tmp_path / "r18.pth")


def test_vit_backbone_loads_a_cached_timm_vit_by_name(tmp_path):
    timm_vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    state = {k: v.contiguous() for k, v in timm_vit.state_dict().items()}
    write_hf_snapshot(tmp_path / "hf", "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                      "model.safetensors", state)
    cfg = load_config(None, ["MODEL.BACKBONE.NAME", "vit_tiny_reid", "MODEL.BACKBONE.PRETRAIN",
                             "True", "MODEL.BACKBONE.PRETRAIN_NAME",
                             "timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                             "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]"])
    vit = BACKBONES.get("vit_tiny_reid")(cfg.MODEL, cfg.INPUT)
    assert torch.equal(vit.blocks[0].attn.qkv.weight, timm_vit.blocks[0].attn.qkv.weight)
    assert torch.equal(vit.cls_token, timm_vit.cls_token)
