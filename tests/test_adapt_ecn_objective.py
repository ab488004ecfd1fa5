"""ECN objective: total loss, memory written after the step with alpha = 0.01*epoch, the
neighbour switch, and frozen early stages (no gradient, BN statistics untouched)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.engine.freeze import freeze_modules, set_frozen_norms_eval
from uda_reid.adapt.invariance import invariance_loss
from uda_reid.adapt.memory import ExemplarMemory
from uda_reid.adapt.methods.ecn import ECNObjective
from uda_reid.models.heads.ecn import ECNHead


class TinyModel(nn.Module):
    """images (B, 3, 2, 2) -> dict with logits (B, 3) and a normalised embedding (B, 4)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6))
        self.cls = nn.Linear(6, 3)
        self.emb = nn.Linear(6, 4)

    def forward(self, x):
        h = self.backbone(x)
        return {"logits": self.cls(h), "embedding": F.normalize(self.emb(h), dim=1)}


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    source = {"images": torch.randn(4, 3, 2, 2, generator=g), "pids": torch.tensor([0, 1, 2, 1])}
    target = {"images": torch.randn(3, 3, 2, 2, generator=g), "indexes": torch.tensor([4, 0, 2])}
    return source, target


def test_total_is_seventy_thirty_mix_and_memory_is_written_after_the_step():
    torch.manual_seed(0)
    model = TinyModel()
    memory = ExemplarMemory(5, 4)
    memory.slots.copy_(F.normalize(torch.randn(5, 4), dim=1))
    old_slots = memory.slots.clone()
    objective = ECNObjective(memory, lam=0.3, temperature=0.05, knn=2)
    source, target = batches()
    losses = objective(model, source, target, epoch=2)
    with torch.no_grad():
        ce = F.cross_entropy(model(source["images"])["logits"], source["pids"])
        feats = model(target["images"])["embedding"]
        inv = F.cross_entropy(feats @ old_slots.t() / 0.05, target["indexes"])
    assert losses["loss_source"].item() == pytest.approx(0.7 * ce.item(), rel=1e-5)
    assert losses["loss_target"].item() == pytest.approx(0.3 * inv.item(), rel=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    (losses["loss_source"] + losses["loss_target"]).backward()
    optimizer.step()
    assert torch.equal(memory.slots, old_slots)  # the step used (and left) the old slots
    objective.update_memory(epoch=2)
    expected = F.normalize(0.02 * old_slots[target["indexes"]] + 0.98 * feats, dim=1)
    assert torch.allclose(memory.slots[target["indexes"]], expected, atol=1e-6)
    assert torch.equal(memory.slots[[1, 3]], old_slots[[1, 3]])
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        objective.update_memory(epoch=2)


def test_neighbourhood_invariance_starts_at_epoch_five():
    torch.manual_seed(0)
    model = TinyModel().eval()
    memory = ExemplarMemory(5, 4)
    memory.slots.copy_(F.normalize(torch.randn(5, 4), dim=1))
    objective = ECNObjective(memory, lam=0.5, knn=2, neighbor_start_epoch=5)
    source, target = batches()
    with torch.no_grad():
        sims = memory.similarities(model(target["images"])["embedding"])
    for epoch, neighbors in ((4, False), (5, True)):
        losses = objective(model, source, target, epoch=epoch)
        expected = invariance_loss(sims, target["indexes"], 0.05, 2, neighbors)
        assert losses["loss_target"].item() == pytest.approx(0.5 * expected.item(), rel=1e-5)
        assert losses["stat_neighbors"].item() == float(neighbors)


def test_frozen_stages_get_no_gradient_and_keep_bn_statistics():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("backbone", nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                                               nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8)))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    frozen = freeze_modules(model, ["backbone.0", "backbone.1"])
    assert frozen == ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight",
                      "backbone.1.bias"]
    model.train()
    assert set_frozen_norms_eval(model, ["backbone.0", "backbone.1"]) == 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    optimizer.step()
    after = model.state_dict()
    for key in ("backbone.0.weight", "backbone.1.weight", "backbone.1.running_mean",
                "backbone.1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["backbone.4.running_mean"], after["backbone.4.running_mean"])
    with pytest.raises(KeyError, match="layer9"):
        freeze_modules(model, ["backbone.layer9"])


def test_ecn_head_branches_match_the_original_layout():
    torch.manual_seed(0)
    head = ECNHead(in_channels=8, num_classes=5, embedding_dim=16, dropout=0.0)
    pooled = torch.randn(6, 8)
    out = head(pooled)
    hidden = head.feat_bn(head.feat(pooled))
    assert torch.allclose(out["embedding"], F.normalize(hidden, dim=1), atol=1e-6)
    assert torch.allclose(out["logits"], head.classifier(F.relu(hidden)), atol=1e-6)
    assert torch.equal(out["features"], pooled)
    head.eval()
    assert torch.equal(head(pooled), pooled)
    head.eval_feature = "after"
    assert head(pooled).shape == (6, 16)


def test_ecn_on_a_vit_with_sie_reads_target_cameras_with_the_target_policy():
    from uda_reid.adapt.memory import ExemplarMemory
    from uda_reid.adapt.methods.ecn import ECNObjective
    from uda_reid.config import load_config
    from uda_reid.models import build_model

    cfg = load_config(None, [
        "MODEL.BACKBONE.NAME", "vit_tiny_reid", "MODEL.POOLING.NAME", "identity",
        "MODEL.HEADS.NAME", "ecn", "MODEL.HEADS.EMBEDDING_DIM", "16",
        "MODEL.TRANSREID.SIE_CAMERA", "True", "MODEL.TRANSREID.NUM_CAMERAS", "6",
        "MODEL.TRANSREID.STRIDE_SIZE", "(16, 16)", "INPUT.SIZE_TRAIN", "(32, 16)",
        "INPUT.SIZE_TEST", "(32, 16)"])
    model = build_model(cfg, num_classes=5).train()
    objective = ECNObjective(ExemplarMemory(10, 16))
    source = {"images": torch.randn(4, 3, 32, 16), "pids": torch.tensor([0, 1, 2, 3]),
              "camids": torch.tensor([0, 1, 2, 5])}
    target = {"images": torch.randn(4, 3, 32, 16), "pids": torch.full((4,), -1),
              "camids": torch.tensor([0, 3, 6, 7]), "indexes": torch.tensor([0, 1, 2, 3])}
    out = objective(model, source, target, epoch=0)  # cameras 6, 7 exist only in the target
    assert torch.isfinite(out["loss_target"]) and torch.isfinite(out["loss_source"])
    assert model.backbone.sie.domain == "source"  # restored after the target forward


def test_without_neighbourhood_invariance_the_target_loss_stays_exemplar_ce_after_the_switch():
    torch.manual_seed(0)
    model = TinyModel().eval()
    memory = ExemplarMemory(5, 4)
    memory.slots.copy_(F.normalize(torch.randn(5, 4), dim=1))
    source, target = batches()
    with torch.no_grad():
        sims = memory.similarities(model(target["images"])["embedding"])
    exemplar = F.cross_entropy(sims / 0.05, target["indexes"])
    off = ECNObjective(memory, lam=0.3, knn=0, neighbor_start_epoch=5)(model, source, target, 7)
    assert off["loss_target"].item() == pytest.approx(0.3 * exemplar.item(), rel=1e-5)
    assert off["stat_neighbors"].item() == 0.0
    on = ECNObjective(memory, lam=0.3, knn=2, neighbor_start_epoch=5)(model, source, target, 7)
    assert on["stat_neighbors"].item() == 1.0
    assert abs(on["loss_target"].item() - off["loss_target"].item()) > 1e-3


def test_lambda_zero_is_source_only_without_a_target_forward():
    torch.manual_seed(0)
    model, reference = TinyModel(), TinyModel()
    reference.load_state_dict(model.state_dict())
    memory = ExemplarMemory(5, 4)
    slots = memory.slots.clone()
    objective = ECNObjective(memory, lam=0.0, knn=2)
    source, target = batches()
    losses = objective(model, source, target, epoch=6)
    assert set(losses) == {"loss_source", "stat_source_ce", "stat_source_acc"}
    expected = F.cross_entropy(reference(source["images"])["logits"], source["pids"])
    assert losses["loss_source"].item() == pytest.approx(expected.item(), rel=1e-6)
    # the BatchNorm saw the source batch only (a target forward would have moved it again)
    bn, ref_bn = model.backbone[2], reference.backbone[2]
    assert torch.equal(bn.running_mean, ref_bn.running_mean) and bn.num_batches_tracked == 1
    objective.update_memory(epoch=6)
    assert torch.equal(memory.slots, slots)
    assert not objective.uses_target and ECNObjective(memory, lam=0.3).uses_target
