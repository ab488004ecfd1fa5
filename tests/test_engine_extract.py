"""Feature extraction: order, flip averaging, eval mode and restoration of module flags."""
import pytest
import torch
from torch import nn

from uda_reid.evaluation.extract import extract_features


class AsymmetricNet(nn.Module):
    """Embedding = per-column weighted sums, so a horizontal flip changes it; BN and dropout
    make train and eval forwards differ."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5))
        self.column_weights = nn.Parameter(torch.arange(1.0, 5.0))

    def forward(self, images):
        x = self.backbone(images)  # (N, 3, H, 4)
        return (x.sum(dim=2) * self.column_weights).flatten(1)  # (N, 12)


def batches(images):
    for start in range(0, len(images), 3):
        chunk = images[start:start + 3]
        idx = torch.arange(start, start + len(chunk))
        yield {"images": chunk, "pids": idx // 2, "camids": idx % 3, "indexes": idx,
               "paths": [f"{i}.jpg" for i in idx.tolist()]}


def test_features_are_eval_mode_and_in_loader_order():
    torch.manual_seed(0)
    net, images = AsymmetricNet(), torch.randn(7, 3, 5, 4)
    net.backbone[0].running_mean.fill_(0.5)
    feats, pids, camids, paths = extract_features(net, list(batches(images)))
    net.eval()
    with torch.no_grad():
        want = net(images)
    assert torch.allclose(feats, want, atol=1e-6)
    assert not feats.requires_grad and feats.dtype == torch.float32
    assert pids.tolist() == [i // 2 for i in range(7)]
    assert camids.tolist() == [i % 3 for i in range(7)]
    assert paths == [f"{i}.jpg" for i in range(7)]


def test_flip_averages_original_and_mirrored_embeddings():
    torch.manual_seed(0)
    net, images = AsymmetricNet(), torch.randn(5, 3, 5, 4)
    feats, _, _, _ = extract_features(net, list(batches(images)), flip=True)
    net.eval()
    with torch.no_grad():
        want = (net(images) + net(images[..., [3, 2, 1, 0]])) / 2
    assert torch.allclose(feats, want, atol=1e-6)
    assert not torch.allclose(feats, net(images), atol=1e-3)


def test_each_module_gets_its_training_flag_back():
    net = AsymmetricNet().train()
    net.backbone[0].eval()  # a frozen BN stays frozen, the rest keeps training
    extract_features(net, list(batches(torch.randn(3, 3, 5, 4))))
    assert net.training and net.backbone[1].training and not net.backbone[0].training


def test_empty_loader_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        extract_features(AsymmetricNet(), [])
