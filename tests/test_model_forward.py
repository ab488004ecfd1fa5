"""A batch dict reaches a model through its own ``forward_batch`` (ReIDModel: cameras for
side-information backbones, identities as targets in training only) or as images alone."""
import torch
from torch import nn

from uda_reid.models.forward import forward_model, move_batch
from uda_reid.models.reid_model import ReIDModel


class SideInfoBackbone(nn.Module):
    uses_side_info = True

    def forward(self, images, camids):
        return images.mean(dim=(2, 3)) + camids[:, None].float()  # (N, 3)


class TargetsHead(nn.Module):
    def forward(self, pooled, targets):
        return {"pooled": pooled, "targets": targets}


def test_a_reid_model_reads_cameras_and_training_targets_from_the_batch():
    model = ReIDModel(SideInfoBackbone(), nn.Identity(), TargetsHead())
    images = torch.ones(2, 3, 4, 2)
    batch = {"images": images, "camids": torch.tensor([0, 5]), "pids": torch.tensor([7, 8])}
    out = forward_model(model.train(), batch)
    assert torch.equal(out["pooled"], torch.tensor([[1.0] * 3, [6.0] * 3]))
    assert torch.equal(out["targets"], torch.tensor([7, 8]))
    assert forward_model(model.eval(), batch)["targets"] is None


def test_any_other_module_gets_the_images_only():
    net = nn.Flatten()
    batch = move_batch({"images": torch.arange(4.0).view(1, 1, 2, 2), "paths": ["a.jpg"]},
                       torch.device("cpu"))
    assert batch["paths"] == ["a.jpg"]
    assert torch.equal(forward_model(net, batch), torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
