"""cluster / mlt pseudo-label training: classifiers from centroids, outlier policies through the
step, degenerate rounds, losses, monitoring, and the label guard."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.adapt.clustering import DBSCANBackend, KMeansBackend, summarize
from uda_reid.adapt.label_quality import label_quality
from uda_reid.adapt.methods.cluster import ClusterAdaptation, PseudoLabelStep, update_round_labels
from uda_reid.adapt.methods.mlt import MLT
from uda_reid.adapt.monitor import LabelQualityHook
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_label_options import BatchOptions, PseudoLabelLosses, RoundOptions
from uda_reid.adapt.pseudo_labels import PseudoLabeler
from uda_reid.config import get_default_config
from uda_reid.config.sections.pseudo_label import PseudoLabelConfig
from uda_reid.engine.events import EventStorage
from uda_reid.engine.hooks import TensorBoardHook
from uda_reid.engine.trainer import Trainer, TrainStep
from uda_reid.losses import cross_entropy_smooth, triplet_loss


def blobs(per=8, num=4, outliers=3, dim=16, seed=0):
    """Tight blobs on the sphere plus far-apart outlier points; returns features, truth."""
    rng = np.random.default_rng(seed)
    centers = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:num + outliers]
    truth = np.concatenate([np.repeat(np.arange(num), per), num + np.arange(outliers)])
    x = centers[truth] + 0.02 * rng.standard_normal((len(truth), dim))
    return torch.tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float32), truth


def slow_centroids(x, labels):
    rows = [x[labels == c].mean(0) for c in range(labels.max() + 1)]
    return F.normalize(torch.stack(rows), dim=1)


class Echo(nn.Module):
    """A 'model' whose embedding of an 'image' is the image itself (a feature row)."""

    def forward(self, images):
        return images


def feature_batches(x, size=8):
    n = len(x)
    return [{"images": x[i:i + size], "pids": torch.full((len(x[i:i + size]),), -1),
             "camids": torch.zeros(len(x[i:i + size]), dtype=torch.long),
             "indexes": torch.arange(i, min(i + size, n)), "paths": [""] * len(x[i:i + size])}
            for i in range(0, n, size)]


def target_items(x):
    """The target training set of feature rows, items by position as the guard gives them."""
    return [{"images": row, "pids": -1, "camids": 0, "indexes": i} for i, row in enumerate(x)]


DEFAULTS = PseudoLabelConfig()


def new_step(x, labeler, classifiers, feature_loader, batch_size=4, num_instances=2,
             source_loader=None, **losses):
    """A step on the feature rows ``x`` with ADAPT.PSEUDO_LABEL's defaults but for ``losses``'
    values."""
    return PseudoLabelStep(
        Echo(), labeler, classifiers, target_items(x), feature_loader,
        batches=BatchOptions(batch_size, num_instances, num_workers=0, seed=0),
        losses=dataclasses.replace(PseudoLabelLosses.from_config(DEFAULTS), **losses),
        rounds=RoundOptions.from_config(DEFAULTS), feature_key="embedding", flip=False,
        device="cpu", domain_bn=False, source_loader=source_loader)


def make_step(x, labeler, num_heads=1, mixture_loader=None):
    classifiers = PseudoClassifiers(num_heads, len(x), x.shape[1], scale=0.0)
    return new_step(x, labeler, classifiers, feature_batches(x), source_loader=mixture_loader)


class ScriptedLabeler:
    """Returns the given ClusterResults, one list per round."""

    def __init__(self, granularities, rounds):
        self.granularities, self.rounds = tuple(granularities), list(rounds)

    def __call__(self, features):
        return self.rounds.pop(0)


def test_each_granularity_head_starts_at_its_normalised_centroids():
    x, truth = blobs()
    coarse = np.where(truth < 2, 0, np.where(truth < 4, 1, -1))
    fine = np.where(truth < 4, truth, -1)
    results = [summarize(fine, "drop"), summarize(coarse, "drop")]
    heads = PseudoClassifiers(2, len(x), x.shape[1], scale=0.0)
    labels, actions = update_round_labels(results, np.full((2, len(x)), -1), x, heads)
    assert actions == ["new", "new"] and np.array_equal(labels, np.stack([fine, coarse]))
    for h, lab in enumerate((fine, coarse)):
        c = slow_centroids(x, lab)
        assert int(heads.num_classes[h]) == len(c)
        torch.testing.assert_close(heads.weight[h, :len(c)], c)
        assert not heads.weight[h, len(c):].any()
        torch.testing.assert_close(heads(h, x), x @ c.T)  # linear logits
    cosine = PseudoClassifiers(1, len(x), x.shape[1], scale=16.0)
    cosine.reset(0, slow_centroids(x, fine) * 3.0)
    torch.testing.assert_close(cosine(0, 2 * x), 16.0 * x @ slow_centroids(x, fine).T)


@pytest.mark.parametrize("policy", ["drop", "singleton"])
def test_outlier_policy_through_the_step(policy):
    x, truth = blobs()
    labeler = PseudoLabeler(DBSCANBackend(min_samples=3), (0.6,), policy, k1=8, k2=2)
    step = make_step(x, labeler)
    record = step.pseudo_label_round(0)["granularities"][0]
    labels = step.labels[0]
    assert record["num_clusters"] == 4 and record["num_outliers"] == 3
    # blobs recovered (up to naming), outliers per policy
    for c in range(4):
        assert len(set(labels[truth == c])) == 1
    outliers = labels[truth >= 4]
    if policy == "drop":
        assert (outliers == -1).all() and record["num_classes"] == 4
    else:
        assert sorted(outliers) == [4, 5, 6] and record["num_classes"] == 7
        # a singleton's class weight is its own normalised feature
        for i in np.where(truth >= 4)[0]:
            torch.testing.assert_close(step.classifiers.weight[0, labels[i]], x[i])
    assert int(step.classifiers.num_classes[0]) == record["num_classes"]
    # the PK sampler never draws a dropped outlier
    drawn = {i for batch in step.target.loader.batch_sampler for i in batch}
    assert policy == "singleton" or not drawn & set(np.where(truth >= 4)[0])


def test_degenerate_round_keeps_previous_labels_and_classifier(caplog):
    x, truth = blobs(outliers=0)
    good = summarize(truth, "drop")
    everything_outlier = summarize(np.full(len(x), -1), "drop")
    one_cluster = summarize(np.zeros(len(x), dtype=np.int64), "drop")
    labeler = ScriptedLabeler((0.5,), [[good], [everything_outlier], [one_cluster]])
    step = make_step(x, labeler)
    step.begin_epoch(0)
    weights = step.classifiers.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        for epoch in (1, 2):
            step.begin_epoch(epoch)
            assert np.array_equal(step.labels[0], truth)
            assert torch.equal(step.classifiers.weight, weights)
    assert [r["granularities"][0]["labels"] for r in step.rounds] == ["new", "kept", "kept"]
    assert "outliers" in step.rounds[1]["granularities"][0]["degenerate"]
    assert "single cluster" in step.rounds[2]["granularities"][0]["degenerate"]
    assert caplog.text.count("DEGENERATE") == 2


def test_degenerate_first_round_trains_on_nothing_but_does_not_stop(caplog):
    x, _ = blobs(outliers=0)
    step = make_step(x, ScriptedLabeler((0.5,), [[summarize(np.full(len(x), -1), "drop")]]))
    with caplog.at_level(logging.WARNING):
        step.begin_epoch(0)
    assert step.rounds[0]["granularities"][0]["labels"] == "inactive"
    assert (step.labels == -1).all() and "drawn at random" in caplog.text
    batches = list(step.target.loader.batch_sampler)  # shuffled batches over every image
    assert len(batches) == len(x) // 4 and sorted(sum(batches, [])) == list(range(len(x)))
    # nothing to train on: no batch drawn, no forward pass, no losses (the trainer skips the
    # update, tests/test_reliability.py)
    assert step.idle and step.rounds[0]["idle"] is True

    class NoDraw:
        def next(self):
            raise AssertionError("an idle round drew a batch")

    step.target = NoDraw()
    assert step.run(step.model) == {}


class FixedLosses(TrainStep):
    """``{}`` (nothing to train on) or a zero loss that depends on the model's output."""

    def __init__(self, idle: bool):
        self.idle = idle
        self.updates = 0

    def run(self, model):
        if self.idle:
            return {}
        return {"loss": 0.0 * model(torch.randn(4, 3)).sum()}

    def after_update(self, model):
        self.updates += 1


@pytest.mark.parametrize("idle", [True, False])
def test_an_iteration_without_losses_takes_no_step_and_keeps_batchnorm(idle):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = FixedLosses(idle)
    Trainer(model, optimizer, step, max_epoch=2, iters_per_epoch=3).train()
    after = model.state_dict()
    same = {k: torch.equal(before[k], after[k]) for k in before}
    if idle:  # every weight and BatchNorm statistic bit-identical, no optimiser state
        assert all(same.values()) and not optimizer.state and step.updates == 0
    else:  # the control: a zero loss still steps (weight decay) and moves BatchNorm
        assert not same["0.weight"] and not same["1.running_var"] and step.updates == 6


def test_losses_mean_ce_over_granularities_triplet_on_the_chosen_one_and_mixture():
    torch.manual_seed(0)
    x, truth = blobs(outliers=0)
    heads = PseudoClassifiers(2, len(x), 16, scale=0.0)
    fine, coarse = truth, truth // 2
    for h, lab in enumerate((fine, coarse)):
        heads.reset(h, slow_centroids(x, lab))
    step = new_step(x, ScriptedLabeler((0.4, 0.6), []), heads, [], 8, 2, triplet_granularity=1,
                    ce_epsilon=0.1, triplet_margin=0.3)
    rows = torch.tensor([0, 1, 8, 9, 16, 17])
    labels = torch.tensor(np.stack([fine, coarse])[:, rows])
    labels[0, 0] = -1  # an outlier at the fine granularity only
    emb = torch.randn(6 + 2, 16)
    feats = torch.randn(6 + 2, 16)
    src_logits = torch.randn(6 + 2, 5)
    source_pids = torch.tensor([3, 3])
    out = {"embedding": emb, "features": feats, "logits": src_logits}
    losses = step.losses(out, labels, source_pids)
    keep = labels[0] >= 0
    ce_fine = cross_entropy_smooth(emb[:6][keep] @ heads.weight[0, :4].T, labels[0][keep], 0.1)
    ce_coarse = cross_entropy_smooth(emb[:6] @ heads.weight[1, :2].T, labels[1], 0.1)
    torch.testing.assert_close(losses["loss_target_ce"], (ce_fine + ce_coarse) / 2)
    torch.testing.assert_close(losses["loss_source_ce"],
                               cross_entropy_smooth(src_logits[6:], source_pids, 0.1))
    tri = triplet_loss(feats, torch.cat([labels[1], source_pids + len(x)]), 0.3)
    torch.testing.assert_close(losses["loss_triplet"], tri)
    # SOURCE_SCALE 0: the source rows only pass through (no source CE, not in the triplet)
    step.loss_options = dataclasses.replace(step.loss_options, source_scale=0.0)
    losses = step.losses(out, labels, source_pids)
    assert "loss_source_ce" not in losses
    torch.testing.assert_close(losses["loss_triplet"], triplet_loss(feats[:6], labels[1], 0.3))


def test_mlt_with_one_granularity_is_cluster_and_cluster_keeps_the_chosen_one():
    cfg = get_default_config()
    cfg.ADAPT.CLUSTER.EPS = (0.4, 0.5, 0.6)
    cfg.ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY = 2
    single = ClusterAdaptation.from_config(cfg.ADAPT)
    multi = MLT.from_config(cfg.ADAPT)
    assert single.labeler.granularities == (0.6,) and single.loss_options.triplet_granularity == 0
    assert multi.labeler.granularities == (0.4, 0.5, 0.6)
    assert multi.loss_options.triplet_granularity == 2
    assert isinstance(multi, ClusterAdaptation)  # one implementation, two settings
    cfg.ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY = 3
    with pytest.raises(ValueError, match="TRIPLET_GRANULARITY=3"):
        MLT.from_config(cfg.ADAPT)


def test_the_pipeline_scores_the_labels_a_method_reports_against_hidden_ids(tmp_path):
    from types import SimpleNamespace

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, truth = blobs()
    pred = np.where(truth < 4, truth // 2, -1)
    step = make_step(x, ScriptedLabeler((0.5,), [[summarize(pred, "drop")]]))
    step.begin_epoch(0)
    scalars = step.scalars()  # the method's own, label-free monitoring
    assert scalars["pseudo0_num_clusters"] == 2 and scalars["pseudo0_num_outliers"] == 3
    assert not any("nmi" in k or "pairwise" in k for k in scalars)
    hook = LabelQualityHook(lambda: step.labels, truth + 100)
    board = TensorBoardHook(str(tmp_path))  # writes what hooks put into the storage
    trainer = SimpleNamespace(epoch=0, storage=EventStorage(), metrics={})
    hook.trainer = board.trainer = trainer
    board.before_train()
    hook.after_epoch()
    board.after_train()
    (scores,) = hook.rounds[0]["granularities"]
    assert hook.rounds[0]["epoch"] == 1 and scores == label_quality(pred, truth)
    # 2 predicted clusters of 16 hold 2 x C(16, 2) pairs, 4 x C(8, 2) of them true
    assert scores["pairwise_precision"] == pytest.approx(4 * 28 / (2 * 120))
    assert scores["pairwise_recall"] == pytest.approx(1.0)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.value for e in events.Scalars("pseudo_labels/g0_nmi")] == \
        pytest.approx([scores["nmi"]])
    silent = LabelQualityHook(lambda: None, truth)  # a method without labels
    silent.trainer = trainer
    silent.after_epoch()
    assert trainer.storage.pop_scalars() == []
    assert silent.rounds == []


@pytest.mark.parametrize("source,target", [
    ("market", "duke"), ("duke", "market"), ("market", "msmt"), ("duke", "msmt"),
    ("synth-market", "synth-duke"), ("synth-duke", "synth-market")])
def test_recipes_resolve_and_share_the_stage1_model(source, target):
    from uda_reid.adapt.pipeline import build_adapt_config, build_method, source_key

    cfgs = {m: build_adapt_config(source, target, m, None, "/tmp/unused", [])
            for m in ("cluster", "mlt", "ecn")}
    cluster, mlt = build_method(cfgs["cluster"]), build_method(cfgs["mlt"])
    assert type(mlt) is MLT and type(cluster) is ClusterAdaptation
    assert len(cluster.labeler.granularities) == 1 and len(mlt.labeler.granularities) == 3
    assert source_key(cfgs["cluster"]) == source_key(cfgs["mlt"])
    if source.startswith("synth"):  # the synthetic recipes reuse ECN's cached source model
        assert source_key(cfgs["cluster"]) == source_key(cfgs["ecn"])
        # cluster's granularity is mlt's triplet granularity
        assert cluster.labeler.granularities[0] == \
            mlt.labeler.granularities[mlt.loss_options.triplet_granularity]
    else:  # FastReID's cross-domain recipe: ResNet-50, GeM, BNNeck, hard triplet
        # mlt as published (UDAStrongBaseline GLT): k-means, transport, DSBN, mean teacher
        k = (1500, 1750, 2000) if target == "msmt" else (600, 700, 800)
        assert isinstance(mlt.labeler.backend, KMeansBackend) and mlt.labeler.granularities == k
        assert (mlt.round_options.transport.mode, mlt.mixture.domain_bn,
                mlt.teacher_options.enabled) == ("epoch", True, True)
        model = cfgs["mlt"].MODEL
        assert (model.BACKBONE.NAME, model.POOLING.NAME, model.HEADS.NAME) == \
            ("resnet50", "gem", "bnneck")
        assert "TripletLoss" in model.LOSSES.NAME and model.LOSSES.TRI.HARD_MINING
        assert mlt.mixture.enabled and not cluster.mixture.enabled


def test_optimizer_state_of_the_classifiers_is_dropped_before_each_round():
    from types import SimpleNamespace

    from uda_reid.adapt.methods.cluster import FreshClassifierStateHook

    heads = PseudoClassifiers(1, 6, 4, scale=0.0)
    other = nn.Linear(4, 2)
    opt = torch.optim.Adam([heads.weight, *other.parameters()], lr=0.1)
    heads.reset(0, torch.eye(4)[:3])
    (heads(0, torch.randn(5, 4)).sum() + other(torch.randn(5, 4)).sum()).backward()
    opt.step()
    hook = FreshClassifierStateHook(heads, period=2)
    hook.trainer = SimpleNamespace(optimizer=opt, epoch=1)
    hook.before_epoch()  # no re-clustering in epoch 1 of a period of 2: the classes stay
    assert heads.weight in opt.state
    hook.trainer.epoch = 2
    hook.before_epoch()
    assert heads.weight not in opt.state and other.weight in opt.state
    opt.step()  # the optimiser starts the classifier afresh
    assert int(opt.state[heads.weight]["step"]) == 1 and int(opt.state[other.weight]["step"]) == 2


def test_a_batch_that_k_does_not_divide_is_a_config_error_not_a_silent_fallback():
    x, _ = blobs()
    with pytest.raises(ValueError, match="NUM_INSTANCES=3"):
        new_step(x, ScriptedLabeler((0.5,), []), PseudoClassifiers(1, len(x), 16, scale=0.0), [],
                 batch_size=8, num_instances=3)
