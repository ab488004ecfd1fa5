"""Mutual Mean-Teaching: each network is taught by the other's teacher (losses against a direct
computation), options checked at the edge, and tools/adapt.py --method mmt end to end: two
networks and two teachers trained and checkpointed, network 2 starting from the source model
of another seed (each seed's stage 1 trained once, then reused from the cache), the exported
teacher of network 1, the label guard, and an exact resume after a kill in the middle of an
epoch."""
import contextlib
import json

import pytest
import torch
from torch import nn

import uda_reid.adapt.pipeline as pipeline

from method_runs import assert_label_guard, recorded_run
from test_adapt_cluster_end_to_end import run_tool
from uda_reid.adapt.methods.mmt import (CLASSIFIERS, MMT, PEER, MMTStep, TwoViews,
                                        training_outputs)
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_label_options import PseudoLabelLosses
from uda_reid.config import get_default_config
from uda_reid.losses.functional import cross_entropy_smooth, triplet_loss
from uda_reid.losses.soft_targets import soft_cross_entropy, soft_triplet_loss

TARGET = "synth-duke"


# ---------------------------------------------------------------- the losses of one batch
def composite(seed):
    """A stand-in for network 1 holding network 2, each with a 3-class classifier (D = 2)."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Module()
    for owner in (net, nn.Module()):
        classifiers = PseudoClassifiers(1, 4, 2, scale=0.0)
        classifiers.reset(0, torch.randn(3, 2, generator=g))
        owner.add_module(CLASSIFIERS, classifiers)
        if owner is not net:
            net.add_module(PEER, owner)
    return net


def test_each_network_learns_from_the_other_networks_teacher():
    model, teacher = composite(0), composite(1)
    step = MMTStep.__new__(MMTStep)  # the loss wiring alone, without data or rounds
    step.model, step.teacher, step.feature_key = model, teacher, "embedding"
    step.loss_options = PseudoLabelLosses(ce_epsilon=0.1, ce_scale=0.5, triplet_margin=0.0,
                                          triplet_scale=0.2, triplet_granularity=0,
                                          source_scale=0.0)
    step.soft_ce_weight, step.soft_triplet_weight = 0.5, 0.8
    g = torch.Generator().manual_seed(2)

    def outputs():
        return {"embedding": torch.randn(6, 2, generator=g),
                "features": torch.randn(6, 5, generator=g)}

    students, teachers = [outputs(), outputs()], [outputs(), outputs()]
    rows = torch.tensor([True, True, True, True, False, True])
    y = torch.tensor([0, 0, 1, 1, 2])
    got = step.mutual_losses(students, teachers, y, rows)
    nets = [model, model.get_submodule(PEER)]
    teacher_nets = [teacher, teacher.get_submodule(PEER)]
    want = {"loss_ce": 0.0, "loss_soft_ce": 0.0, "loss_triplet": 0.0, "loss_soft_triplet": 0.0}
    for i, j in ((0, 1), (1, 0)):  # network i, the teacher of network j
        logits = nets[i].pseudo_classifiers(0, students[i]["embedding"][rows])
        peer = teacher_nets[j].pseudo_classifiers(0, teachers[j]["embedding"][rows])
        f, peer_f = students[i]["features"][rows], teachers[j]["features"][rows]
        want["loss_ce"] += 0.5 * cross_entropy_smooth(logits, y, 0.1)
        want["loss_soft_ce"] += 0.5 * soft_cross_entropy(logits, peer)
        want["loss_triplet"] += 0.2 * triplet_loss(f, y, 0.0)
        want["loss_soft_triplet"] += 0.8 * soft_triplet_loss(f, y, peer_f)
    assert set(got) == set(want)
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-6), key
    # taught by their own teachers instead, the networks' soft CE would differ
    own = sum(soft_cross_entropy(nets[i].pseudo_classifiers(0, students[i]["embedding"][rows]),
                                 teacher_nets[i].pseudo_classifiers(
                                     0, teachers[i]["embedding"][rows])).detach()
              for i in (0, 1))
    assert abs(own.item() - got["loss_soft_ce"].item() / 0.5) > 1e-3


def test_two_views_are_independent_draws_and_the_teacher_keeps_its_statistics():
    views = TwoViews(lambda x: x + torch.rand(3))(torch.zeros(3))
    assert views.shape == (2, 3) and not torch.equal(views[0], views[1])
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    net.eval()
    before = net[1].running_mean.clone()
    with training_outputs(net):
        assert net.training and not net[1].training and not net[2].training
        out = net(torch.randn(8, 3))
    assert not net.training and not net[1].training and torch.equal(net[1].running_mean, before)
    assert out.shape == (8, 4)
    with torch.no_grad():
        x = torch.randn(8, 3)
        with training_outputs(net):
            a = net(x)
        assert torch.equal(a, net(x))  # inference statistics, no dropout


def test_options_are_checked_at_the_edge():
    cfg = get_default_config()
    cfg.ADAPT.CLUSTER.EPS = (0.5, 0.6)
    with pytest.raises(ValueError, match="one granularity"):
        MMT.from_config(cfg.ADAPT)
    cfg = get_default_config()
    cfg.ADAPT.SOLVER.BACKBONE_LR_FACTOR = 0.1
    with pytest.raises(ValueError, match="BACKBONE_LR_FACTOR"):
        MMT.from_config(cfg.ADAPT)
    cfg = get_default_config()
    cfg.ADAPT.MMT.TEACHER_MOMENTUM = 1.0
    with pytest.raises(ValueError, match="ADAPT.MMT.TEACHER_MOMENTUM"):
        MMT.from_config(cfg.ADAPT)
    cfg = get_default_config()
    cfg.ADAPT.MMT.PEER_SOURCE_SEED_OFFSET = -1
    with pytest.raises(ValueError, match="ADAPT.MMT.PEER_SOURCE_SEED_OFFSET"):
        MMT.from_config(cfg.ADAPT)
    method = MMT.from_config(get_default_config().ADAPT)
    assert method.start_model_seeds(5) == (6,)  # the default offset 1
    cfg.ADAPT.MMT.PEER_SOURCE_SEED_OFFSET = 0
    assert MMT.from_config(cfg.ADAPT).start_model_seeds(5) == ()


# ---------------------------------------------------------------- tools/adapt.py end to end
# k-means at 8 clusters, 3 iterations per epoch: a kill after one step of epoch 2 is mid-epoch
OPTIONS = ("ADAPT.SOLVER.OPT", "Adam", "ADAPT.SOLVER.BASE_LR", "3.5e-4",
           "ADAPT.SOLVER.ITERS_PER_EPOCH", "3", "ADAPT.MMT.NUM_INSTANCES", "2",
           "ADAPT.MMT.TEACHER_MOMENTUM", "0.9", "ADAPT.CLUSTER.BACKEND", "kmeans",
           "ADAPT.CLUSTER.NUM_CLUSTERS", "[8]")


def run_mmt(root, cache, out, *extra):
    """A tiny run with its source model cached in ``cache``, outside ``root``: the guard test
    looks for the data folder in everything the method reaches (its options included)."""
    return run_tool(root, out, "mmt", *OPTIONS, "ADAPT.SOURCE_CACHE", str(cache), *extra)


@contextlib.contextmanager
def start_and_stage1_recorded(seen):
    """Records in ``seen`` the seeds of the stage-1 trainings (``stage1_seeds``) and, as
    ``MMT.build_step`` leaves them, the starting tensors of network 1 (``start``) and network
    2 (``peer_start``, under network 1's names)."""
    build, train = MMT.build_step, pipeline.train
    seen["stage1_seeds"] = []

    def recording_build(self, ctx):
        step = build(self, ctx)
        state = {k: v.clone() for k, v in ctx.model.state_dict().items()}
        seen["start"] = {k: v for k, v in state.items() if not k.startswith(f"{PEER}.")}
        seen["peer_start"] = {k[len(PEER) + 1:]: v for k, v in state.items()
                              if k.startswith(f"{PEER}.")}
        return step

    def recording_train(cfg, *args, **kwargs):
        seen["stage1_seeds"].append(cfg.SEED)
        return train(cfg, *args, **kwargs)

    MMT.build_step, pipeline.train = recording_build, recording_train
    try:
        yield seen
    finally:
        MMT.build_step, pipeline.train = build, train


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted run, with what the method was handed (context, options, batches), the
    networks' starting tensors and the stage-1 trainings it ran."""
    root, cache = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("cache")
    out = cache / "full"  # the output folder (the method sees it) outside the data's
    with start_and_stage1_recorded({}) as start:
        results, seen = recorded_run(MMT, lambda: run_mmt(root, cache, out))
    return root, out, results, {**seen, **start}


def source_weights(cache_dir):
    """The model tensors of the source model cached in ``cache_dir``."""
    return torch.load(f"{cache_dir}/last.pth", weights_only=False)["model"]


def assert_starts_from(start, weights):
    """Every tensor of a source model's checkpoint ``weights`` is the network's at the start
    (which adds only its pseudo-label classifier)."""
    assert set(start) - set(weights) == {k for k in start if k.startswith(f"{CLASSIFIERS}.")}
    for key, value in weights.items():
        assert torch.equal(start[key], value), key


def test_network_two_starts_from_the_source_model_of_the_next_seed(full_run):
    from uda_reid.config import load_config

    _, out, results, seen = full_run
    source = results["stages"][0]
    assert [m["seed"] for m in source["seed_models"]] == [1]
    peer_cache = source["seed_models"][0]["cache"]
    # the cache folder of each seed is the one the pipeline gives a run with that SEED
    cfg = load_config(out / "config.yaml")
    for seed, cache in ((0, source["cache"]), (1, peer_cache)):
        cfg.SEED = seed
        assert cache == str(pipeline.source_cache_dir(cfg))
    assert source["cache"] != peer_cache
    assert_starts_from(seen["start"], source_weights(source["cache"]))
    assert_starts_from(seen["peer_start"], source_weights(peer_cache))
    key = "backbone.conv1.weight"  # two pre-trainings of different seeds differ
    assert not torch.allclose(seen["start"][key], seen["peer_start"][key])
    # both classifiers start from the same centroids
    for name in ("weight", "num_classes"):
        assert torch.equal(seen["start"][f"{CLASSIFIERS}.{name}"],
                           seen["peer_start"][f"{CLASSIFIERS}.{name}"])


def test_each_seeds_stage1_is_trained_once_then_reused(full_run, tmp_path):
    from pathlib import Path

    root, out, results, seen = full_run
    source = results["stages"][0]
    assert seen["stage1_seeds"] == [0, 1]  # the run's own, then network 2's
    assert not source["reused"] and not source["seed_models"][0]["reused"]
    cached = {p.name for p in out.parent.iterdir() if p.name != "full"}
    assert cached == {Path(source["cache"]).name, Path(source["seed_models"][0]["cache"]).name}
    # the run of SEED 1 reuses both: its own source model is the one above's network 2's
    with start_and_stage1_recorded({}) as again:
        run_mmt(root, out.parent, tmp_path, "SEED", "1", "ADAPT.MMT.PEER_SOURCE_SEED_OFFSET",
                "0", "ADAPT.SOLVER.MAX_EPOCH", "1", "ADAPT.SOLVER.ITERS_PER_EPOCH", "1")
    rerun = json.loads((tmp_path / "results.json").read_text())["stages"][0]
    assert again["stage1_seeds"] == [] and rerun["reused"] and "seed_models" not in rerun
    assert rerun["cache"] == source["seed_models"][0]["cache"]
    # offset 0: network 2 starts as a copy of network 1 (classifier included)
    assert_starts_from(again["start"], source_weights(rerun["cache"]))
    assert set(again["peer_start"]) == set(again["start"])
    for key, value in again["start"].items():
        assert torch.equal(again["peer_start"][key], value), key


def test_tool_trains_two_networks_with_their_teachers(full_run):
    _, out, results, _ = full_run
    stage = results["stages"][1]
    assert [s["name"] for s in results["stages"]] == ["source", "mmt"]
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    assert all(r["granularities"][0]["num_clusters"] == 8 and not r["idle"]
               for r in stage["rounds"])
    for curve in stage["curves"]:
        assert all(curve[k] > 0 for k in ("loss_ce", "loss_soft_ce", "loss_triplet",
                                          "loss_soft_triplet"))
    for quality in stage["label_quality"]:  # the pipeline scores the reported labels
        assert quality["granularities"][0]["num_clusters"] == 8
    state = torch.load(out / "last.pth", weights_only=False)
    assert state["meta"]["training_modules"] == [CLASSIFIERS, PEER]
    hook = state["hooks"]["MeanTeacherHook"]
    assert hook["swapped"] is True  # the model slot holds the teachers, the hook the students
    teachers, students = state["model"], hook["mean_teacher"]["teacher"]
    assert set(teachers) == set(students)
    key = "backbone.conv1.weight"
    # the two students started from different source models and saw other views
    assert not torch.allclose(students[key], students[f"{PEER}.{key}"])
    assert not torch.allclose(teachers[key], students[key])
    # all four classifiers restarted from the same centroids of the last round
    for name in (f"{CLASSIFIERS}.num_classes", f"{PEER}.{CLASSIFIERS}.num_classes"):
        assert int(teachers[name][0]) == int(students[name][0]) == 8
    assert not torch.allclose(students[f"{CLASSIFIERS}.weight"],
                              students[f"{PEER}.{CLASSIFIERS}.weight"])


def test_the_exported_teacher_of_network_one_tests_alone_to_its_reported_metrics(full_run,
                                                                                 tmp_path):
    from uda_reid.config import load_config
    from uda_reid.engine.flows import test

    _, out, results, _ = full_run
    cfg = load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "last.pth"),
                                            "DATASETS.TESTS", f"['{TARGET}']",
                                            "OUTPUT_DIR", str(tmp_path)])
    metrics = test(cfg)  # a plain model: no network 2, no classifiers
    assert metrics[TARGET] == pytest.approx(results["metrics"][TARGET], abs=1e-6)


def test_the_label_guard_holds_for_mmt(full_run):
    root, _, _, seen = full_run
    assert_label_guard(seen, root, TARGET)


def assert_same_tensors(a, b, where="checkpoint"):
    """Every tensor (and other leaf) of two nested checkpoint structures is equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif not (isinstance(a, float) and where.endswith("seconds")):
        assert a == b, where


def test_resume_after_a_kill_mid_epoch_gives_every_tensor_of_the_uninterrupted_run(
        full_run, tmp_path, monkeypatch):
    root, out, full, _ = full_run
    run = MMTStep.run
    calls = []

    def killed_in_epoch_two(self, model):
        if len(self.rounds) == 2:
            calls.append(1)
            if len(calls) == 2:  # after one optimiser step of epoch 2
                raise KeyboardInterrupt("killed")
        return run(self, model)

    monkeypatch.setattr(MMTStep, "run", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_mmt(root, out.parent, tmp_path)
    monkeypatch.setattr(MMTStep, "run", run)
    resumed = run_mmt(root, out.parent, tmp_path, "--resume")
    assert resumed["metrics"] == full["metrics"]
    # both source models were reused from the cache the uninterrupted run trained them in,
    # and stage 2 is the same as when they were trained
    assert resumed["stages"][0]["reused"] and resumed["stages"][0]["seed_models"][0]["reused"]
    a = torch.load(out / "last.pth", weights_only=False)
    b = torch.load(tmp_path / "last.pth", weights_only=False)
    assert any(k.startswith(f"{PEER}.backbone") for k in a["model"]) and a["optimizer"]["state"]
    for key in ("model", "optimizer", "step", "rng"):
        assert_same_tensors(a[key], b[key], key)
    # both teachers and both students (the hook holds the students after the epoch's swap)
    assert_same_tensors(a["hooks"]["MeanTeacherHook"], b["hooks"]["MeanTeacherHook"], "teacher")
    assert_same_tensors(a["hooks"]["EpochCurvesHook"], b["hooks"]["EpochCurvesHook"], "curves")


@pytest.mark.parametrize("source,target,k", [
    ("market", "duke", 700), ("duke", "market", 500), ("market", "msmt", 1500),
    ("duke", "msmt", 1500), ("synth-market", "synth-duke", None),
    ("synth-duke", "synth-market", None)])
def test_recipes_resolve_to_the_published_values(source, target, k):
    from uda_reid.adapt.clustering import KMeansBackend
    from uda_reid.adapt.pipeline import build_adapt_config, build_method, source_key

    cfg = build_adapt_config(source, target, "mmt", None, "/tmp/unused", [])
    method = build_method(cfg)
    assert type(method) is MMT
    assert (method.options.soft_ce_weight, method.options.soft_triplet_weight) == (0.5, 0.8)
    assert (method.loss_options.triplet_margin, method.teacher_options.momentum) == (0.0, 0.999)
    assert method.options.peer_seed_offset == 1  # two source models of different seeds
    assert cfg.ADAPT.SOLVER.OPT == "Adam" and cfg.ADAPT.SOLVER.BASE_LR == 3.5e-4
    assert cfg.ADAPT.SOLVER.IMS_PER_BATCH == 64 and method.num_instances == 4
    if k is None:  # the synthetic recipes share the cluster recipes' stage 1 and clustering
        cluster = build_adapt_config(source, target, "cluster", None, "/tmp/unused", [])
        assert source_key(cfg) == source_key(cluster)
        assert cfg.ADAPT.CLUSTER == cluster.ADAPT.CLUSTER
    else:
        assert isinstance(method.labeler.backend, KMeansBackend)
        assert method.labeler.granularities == (k,)
        assert (cfg.ADAPT.SOLVER.MAX_EPOCH, cfg.ADAPT.SOLVER.ITERS_PER_EPOCH) == (40, 400)
        assert (cfg.MODEL.POOLING.NAME, cfg.MODEL.HEADS.NECK_FEAT) == ("avg", "after")
