"""SpCL: the hybrid memory's loss against a hand computation and a slow transcription of the
official masked softmax, its momentum update against a slow loop, the self-paced criteria
against a slow transcription of the official refinement, the batch sampler (camera-aware:
against a slow transcription of the official sampler and hand-checked properties), the label
guard, and tools/adapt.py --method spcl end to end with an exact resume (memory included)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from method_runs import assert_label_guard, killed_then_resumed, recorded_run, tiny_adapt_run
from uda_reid.adapt.clustering import build_backend
from uda_reid.adapt.hybrid_memory import HybridMemory, hybrid_contrastive_loss
from uda_reid.adapt.methods.spcl import SpCL, SpCLStep
from uda_reid.adapt.pseudo_labels import PseudoLabeler
from uda_reid.adapt.self_paced import membership_iou, self_paced_labels
from uda_reid.data.samplers import GroupStreamBatchSampler, PKBatchSampler

TARGET = "synth-duke"


def hand_memory():
    """One source centroid (1, 0); target slots (0, 1), (0.6, 0.8), (0.8, 0.6), the first two
    one cluster, the third un-clustered."""
    memory = HybridMemory(2, 1, 3, temperature=0.5, momentum=0.2)
    memory.initialise(torch.tensor([[2.0, 0.0]]),
                      torch.tensor([[0.0, 3.0], [0.6, 0.8], [0.8, 0.6]]))
    memory.set_target_labels(np.array([0, 0, -1]))
    return memory


def test_memory_loss_matches_a_hand_computation():
    memory = hand_memory()
    assert memory.groups.tolist() == [0, 1, 1, 2]
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    slots = torch.tensor([2, 0])  # target image 1 (slot 1 + 1), source class 0
    # (0.6, 0.8): similarities 0.6 | 0.8, 1.0 | 0.96 -> group logits 1.2, 1.8, 1.92 (tau 0.5)
    target = -1.8 + math.log(math.exp(1.2) + math.exp(1.8) + math.exp(1.92))
    # (1, 0): 1 | 0, 0.6 | 0.8 -> 2, 0.6, 1.6
    source = -2.0 + math.log(math.exp(2.0) + math.exp(0.6) + math.exp(1.6))
    bank = memory.features.clone()
    loss = memory(features, slots)
    assert float(loss.detach()) == pytest.approx((target + source) / 2, rel=1e-5)
    loss.backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert torch.equal(memory.features, bank)  # the loss reads the memory, never trains it


def official_loss(features, slots, bank, groups, tau):
    """yxgeee/SpCL hm.py transcribed with loops: mean similarity per non-empty group, softmax
    with 1e-6 in the denominator, -log(p + 1e-6) of the own slot's group."""
    x = F.normalize(features.double(), dim=1)
    bank, groups = bank.double(), groups.tolist()
    total = 0.0
    for b in range(len(x)):
        sims = {}
        for k, g in enumerate(groups):
            sims.setdefault(g, []).append(float(x[b] @ bank[k]) / tau)
        exps = {g: math.exp(sum(v) / len(v)) for g, v in sims.items()}
        p = exps[groups[int(slots[b])]] / (sum(exps.values()) + 1e-6)
        total += -math.log(p + 1e-6)
    return total / len(x)


@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_memory_loss_matches_the_official_masked_softmax(tau):
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(12, 6, generator=g), dim=1)
    groups = torch.tensor([0, 1, 2, 5, 5, 5, 7, 3, 3, 8, 9, 7])  # groups 4 and 6 are empty
    features = torch.randn(7, 6, generator=g)
    slots = torch.tensor([0, 2, 3, 4, 9, 11, 6])
    got = float(hybrid_contrastive_loss(features, slots, bank, groups, tau))
    assert got == pytest.approx(official_loss(features, slots, bank, groups, tau), rel=1e-5)


def test_momentum_update_matches_a_slow_loop():
    memory = hand_memory()
    before = memory.features.clone()
    features = torch.tensor([[0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    slots = torch.tensor([0, 0, 3])  # the source class twice, the un-clustered target image
    memory.update(features, slots)
    slow = before.clone()
    for x, k in zip(F.normalize(features, dim=1), slots.tolist()):
        slow[k] = 0.2 * slow[k] + 0.8 * x
        slow[k] = slow[k] / slow[k].norm()
    assert torch.allclose(memory.features, slow, atol=1e-6)
    # by hand: slot 3 (0.8, 0.6) -> normalise(0.2 (0.8, 0.6) + 0.8 (1, 0)) = (0.96, 0.12) / norm
    assert torch.allclose(memory.features[3], F.normalize(torch.tensor([0.96, 0.12]), dim=0))
    assert torch.equal(memory.features[1:3], before[1:3])


def slow_iou(a, b, i):
    def members(labels):
        return {j for j in range(len(labels))
                if (labels[j] == labels[i] and labels[i] >= 0) or j == i}
    return len(members(a) & members(b)) / len(members(a) | members(b))


def slow_official_refinement(labels, tight, loose, quantile):
    """The official refinement transcribed with sets: (clusters of two or more images as
    frozensets, threshold as 1 - R)."""
    n = len(labels)
    r_comp = [1 - slow_iou(labels, tight, i) for i in range(n)]
    r_indep = [1 - slow_iou(labels, loose, i) for i in range(n)]
    clusters = {}
    for i in range(n):
        clusters.setdefault(labels[i] if labels[i] >= 0 else ("outlier", i), []).append(i)
    c_comp = {c: min(r_comp[i] for i in m) for c, m in clusters.items()}
    c_indep = {c: min(r_indep[i] for i in m) for c, m in clusters.items()}
    noins = sorted(c_indep[c] for c, m in clusters.items() if len(m) > 1)
    threshold = noins[min(len(noins) - 1, int(np.round(len(noins) * quantile)))]
    kept = {}
    for c, m in clusters.items():
        for i in m:
            if c_indep[c] <= threshold and r_comp[i] <= c_comp[c]:
                kept.setdefault(c, set()).add(i)
    return {frozenset(m) for m in kept.values() if len(m) > 1}, 1 - threshold


def partition(labels):
    return {frozenset(np.where(labels == c)[0].tolist()) for c in set(labels.tolist()) if c >= 0}


def test_self_paced_criteria_on_a_hand_made_clustering():
    # eps: A = 0..3, B = 4..8, C = 9..11, outliers 12, 13
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, -1, -1])
    # tighter: B splits into 4..6 and two outliers (compactness 3/5 and 1/5)
    tight = np.array([0, 0, 0, 0, 1, 1, 1, -1, -1, 2, 2, 2, -1, -1])
    # looser: A takes in 12 (independence 4/5), C takes in 13 (3/4), B stays (1)
    loose = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 0, 2])
    assert np.allclose(membership_iou(labels, loose),
                       [0.8] * 4 + [1.0] * 5 + [0.75] * 3 + [0.2, 0.25])
    assert np.allclose(membership_iou(labels, tight), [1] * 4 + [0.6] * 3 + [0.2] * 2 + [1] * 5)
    # independences sorted (1, 0.8, 0.75); quantile 0.3 -> position round(0.9) = 1 -> 0.8
    result = self_paced_labels(labels, tight, loose, quantile=0.3)
    assert result.threshold == pytest.approx(0.8)
    assert partition(result.labels) == {frozenset(range(4)), frozenset({4, 5, 6})}
    assert (result.labels[7:] == -1).all()
    assert (result.rejected_clusters, result.dropped_members) == (1, 2)
    # quantile 0.9 -> position min(2, round(2.7)) = 2 -> 0.75: C passes too
    result = self_paced_labels(labels, tight, loose, quantile=0.9)
    assert result.threshold == pytest.approx(0.75)
    assert partition(result.labels) == {frozenset(range(4)), frozenset({4, 5, 6}),
                                        frozenset({9, 10, 11})}
    # no cluster (a degenerate round): every image un-clustered, no threshold set yet
    alone = self_paced_labels(np.full(5, -1), np.full(5, -1), np.full(5, -1))
    assert (alone.labels == -1).all() and alone.threshold is None
    # a threshold from an earlier round is kept, whatever the quantile
    result = self_paced_labels(labels, tight, loose, threshold=0.9, quantile=0.9)
    assert partition(result.labels) == {frozenset({4, 5, 6})} and result.threshold == 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantile", [0.5, 0.9])
def test_self_paced_criteria_match_the_official_refinement(seed, quantile):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, 0.35, (12, 2)) for c in rng.uniform(0, 6, (6, 2))])
    labels, tight, loose = (DBSCAN(eps=e, min_samples=3).fit_predict(points)
                            for e in (0.45, 0.35, 0.55))
    clusters, threshold = slow_official_refinement(labels, tight, loose, quantile)
    result = self_paced_labels(labels, tight, loose, quantile=quantile)
    assert partition(result.labels) == clusters
    assert result.threshold == pytest.approx(threshold)
    assert sorted(set(result.labels.tolist()) - {-1}) == list(range(len(clusters)))


def test_target_batches_take_groups_whole_and_singletons_once():
    labels = [0, 0, 0, 1, 2, 2, -1, 3]  # 1 and 3: one image each; 6: left out
    sampler = GroupStreamBatchSampler(labels, batch_size=3, num_instances=2, seed=5)
    assert len(sampler) == 2  # 2 + 1 + 2 + 1 images per epoch
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert [len(b) for b in batches] == [3, 3]
        drawn = sorted(i for b in batches for i in b)
        assert drawn.count(3) == 1 and drawn.count(7) == 1 and 6 not in drawn
        assert sorted(i for i in drawn if i in (4, 5)) == [4, 5]
        group0 = [i for i in drawn if i < 3]
        assert len(group0) == 2 and len(set(group0)) == 2  # K distinct of three
    with pytest.raises(ValueError, match="cannot fill a batch of 7"):
        GroupStreamBatchSampler(labels, batch_size=7, num_instances=2)


# ------------------------------------------------ camera-aware batches (official sampler)
# groups (label: images, cameras): 0: 0-3 in cameras 0, 0, 1, 2; 1: 4-6 all in camera 3;
# 2: 7, 8 in cameras 0, 1; 3: image 9 alone; 11-15 (label 4) in cameras 1, 1, 1, 2, 2; 10: -1
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, -1, 4, 4, 4, 4, 4]
CAMIDS = [0, 0, 1, 2, 3, 3, 3, 0, 1, 5, 0, 1, 1, 1, 2, 2]


def slow_camera_aware_batches(labels, camids, batch_size, k, seed, epoch, rank=0, world=1):
    """The official RandomMultipleGallerySampler written out with lists, drawing from the
    generator of (seed, epoch) as the sampler family does: groups by increasing label in a
    random order; an anchor, then k - 1 images of other cameras, else of the group's other
    images (with replacement unless k are there), a lone image once; the stream cut into full
    batches; rank r of ``world`` takes every world-th batch of the usable ones."""
    rng = np.random.default_rng([seed, epoch])
    groups = {}
    for i, label in enumerate(labels):
        if label >= 0:
            groups.setdefault(label, []).append(i)
    groups = [groups[label] for label in sorted(groups)]
    stream = []
    for j in rng.permutation(len(groups)):
        members = groups[j]
        if len(members) == 1:
            stream.append(members[0])
            continue
        anchor = members[rng.integers(len(members))]
        stream.append(anchor)
        select = [m for m in members if camids[m] != camids[anchor]]
        if not select:
            select = [m for m in members if m != anchor]
        for pick in rng.choice(np.array(select), k - 1, replace=len(select) < k):
            stream.append(int(pick))
    batches = [stream[i:i + batch_size]
               for i in range(0, len(stream) - batch_size + 1, batch_size)]
    usable = len(batches) // world * world
    return batches[rank:usable:world]


def group_runs(stream, labels):
    """The stream split into runs of one label (consecutive groups differ in label)."""
    runs = []
    for i in stream:
        if runs and labels[runs[-1][0]] == labels[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def test_camera_aware_batches_match_the_slow_official_sampler():
    for seed, batch_size, k, world in ((0, 13, 3, 1), (3, 4, 3, 1), (1, 3, 2, 2), (2, 2, 4, 2)):
        for rank in range(world):
            sampler = GroupStreamBatchSampler(LABELS, batch_size, k, seed, rank, world,
                                              camids=CAMIDS)
            for epoch in range(5):
                sampler.set_epoch(epoch)
                want = slow_camera_aware_batches(LABELS, CAMIDS, batch_size, k, seed, epoch,
                                                 rank, world)
                assert list(sampler) == want and len(sampler) == len(want)


def test_camera_aware_groups_prefer_other_cameras_than_their_anchor():
    k = 3
    sampler = GroupStreamBatchSampler(LABELS, 13, k, seed=7, camids=CAMIDS)
    anchors, same_camera = {}, 0
    for epoch in range(300):
        sampler.set_epoch(epoch)
        (batch,) = list(sampler)  # 3 + 3 + 3 + 1 + 3 images: the whole epoch's stream
        runs = group_runs(batch, LABELS)
        assert sorted(LABELS[r[0]] for r in runs) == [0, 1, 2, 3, 4]  # each group once
        for run in runs:
            label = LABELS[run[0]]
            if label == 3:
                assert run == [9]
                continue
            anchor, rest = run[0], run[1:]
            members = [i for i, lab in enumerate(LABELS) if lab == label]
            assert len(run) == k and set(run) <= set(members) and anchor not in rest
            anchors.setdefault(label, set()).add(anchor)
            other = [m for m in members if CAMIDS[m] != CAMIDS[anchor]]
            if other:
                assert all(CAMIDS[i] != CAMIDS[anchor] for i in rest)
            if len(other or members) - (0 if other else 1) >= k:  # k to draw from: no repeat
                assert len(set(rest)) == len(rest)
            same_camera += sum(CAMIDS[i] == CAMIDS[anchor] for i in rest)
    # every image is an anchor sometimes; only group 1 (one camera) repeats the anchor's camera
    assert all(anchors[label] == {i for i, lab in enumerate(LABELS) if lab == label}
               for label in anchors)
    assert same_camera == 300 * (k - 1)
    # without camera ids the other groups draw images of the same camera as well
    plain = GroupStreamBatchSampler(LABELS, 13, k, seed=7)
    mixed = 0
    for epoch in range(300):
        plain.set_epoch(epoch)
        for run in group_runs(list(plain)[0], LABELS):
            if LABELS[run[0]] in (0, 4):
                mixed += len({CAMIDS[i] for i in run}) < len(run)
    assert mixed > 100


def test_camera_aware_batches_are_seeded_and_resume_mid_epoch():
    def epoch_batches(seed, epoch, state=None):
        sampler = GroupStreamBatchSampler(LABELS, 4, 3, seed, camids=CAMIDS)
        if state is None:
            sampler.set_epoch(epoch)
        else:
            sampler.load_state_dict(state)
        return sampler, list(sampler)

    sampler, batches = epoch_batches(5, 2)
    assert epoch_batches(5, 2)[1] == batches
    assert epoch_batches(6, 2)[1] != batches and epoch_batches(5, 3)[1] != batches
    # a run stopped after two batches of the epoch: the restored sampler (its state a
    # checkpoint of the epoch) draws the same remaining batches
    done = batches[:2]
    _, restored = epoch_batches(5, 0, sampler.state_dict())
    assert restored[:2] == done and restored[2:] == batches[2:]
    with pytest.raises(ValueError, match="16 camera ids for 15 labels"):
        GroupStreamBatchSampler(LABELS[:-1], 4, 3, camids=CAMIDS)


def test_options_are_checked():
    dbscan = PseudoLabeler(build_backend("dbscan"), (0.6,))
    with pytest.raises(ValueError, match="ADAPT.CLUSTER.BACKEND dbscan"):
        SpCL(PseudoLabeler(build_backend("kmeans"), (10,)))
    with pytest.raises(ValueError, match="ADAPT.CLUSTER.OUTLIERS drop"):
        SpCL(PseudoLabeler(build_backend("dbscan"), (0.6,), outliers="singleton"))
    with pytest.raises(ValueError, match="ADAPT.SPCL.EPS_GAP=0.5"):
        SpCL(dbscan, eps_gap=0.5)
    with pytest.raises(ValueError, match="ADAPT.SPCL.MOMENTUM"):
        SpCL(dbscan, momentum=1.5)
    assert SpCL(dbscan).labeler.granularities == pytest.approx((0.58, 0.6, 0.62))
    assert SpCL(dbscan, self_paced=False).labeler.granularities == (0.6,)


def run_tool(data_root, cache, out, *extra):
    """A tiny run with the official camera-aware batches (the synthetic recipe keeps its
    plain ones)."""
    return tiny_adapt_run("spcl", TARGET, data_root, cache, out,
                          ["ADAPT.SPCL.NUM_INSTANCES", "2", "ADAPT.SPCL.INDEP_QUANTILE", "0.5",
                           "ADAPT.SPCL.CAMERA_AWARE_SAMPLING", "True", *extra])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted run, with what the method was handed (context, options, batches), the
    step it built (``step``) and, built aside from the same context, the step it would build
    without camera-aware sampling (``plain_step``)."""
    root, cache = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("cache")
    build, steps = SpCL.build_step, []

    def keeping_build(self, ctx):
        with torch.random.fork_rng():  # leave the run's random state as it is
            plain = copy.copy(self)
            plain.camera_aware = False
            steps.append(build(plain, ctx))
        steps.append(build(self, ctx))
        return steps[-1]

    SpCL.build_step = keeping_build
    try:
        results, seen = recorded_run(SpCL, lambda: run_tool(root, cache, cache / "full"))
    finally:
        SpCL.build_step = build
    return root, cache, results, {**seen, "plain_step": steps[0], "step": steps[1]}


def test_camera_aware_sampling_switches_both_samplers(full_run):
    _, _, _, seen = full_run
    step, ctx = seen["step"], seen["ctx"]
    for stream, images in ((step.source, ctx.source), (step.target, ctx.target)):
        sampler = stream.loader.batch_sampler
        assert isinstance(sampler, GroupStreamBatchSampler)
        assert sampler.camids.tolist() == list(images.camids)
    assert [len(m) for m in step.source.loader.batch_sampler.index] == \
        np.bincount(ctx.source.pids).tolist()  # one group per source identity
    # off (the synthetic recipes): PK source batches, target groups without camera ids
    plain = seen["plain_step"]
    assert isinstance(plain.source.loader.batch_sampler, PKBatchSampler)
    assert plain.target_camids is None and step.target_camids == ctx.target.camids


def test_tool_trains_with_the_hybrid_memory_and_reports_rounds(full_run):
    root, cache, results, seen = full_run
    stage = results["stages"][1]
    assert [s["name"] for s in results["stages"]] == ["source", "spcl"]
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    assert all(r["num_clusters"] > 1 for r in stage["rounds"])
    first = stage["rounds"][0]["indep_threshold"]
    assert all(r["indep_threshold"] == first for r in stage["rounds"])  # set once
    assert all(c["loss_source_memory"] > 0 and c["loss_target_memory"] > 0
               for c in stage["curves"])
    for quality, record in zip(stage["label_quality"], stage["rounds"]):
        (scores,) = quality["granularities"]
        assert scores["num_clusters"] == record["num_clusters"]
        assert scores["num_outliers"] == record["num_unclustered"]
    assert all(0.0 <= v <= 1.0 for v in results["metrics"][TARGET].values())
    state = torch.load(cache / "full" / "last.pth", weights_only=False)
    memory = state["step"]["memory"]
    num_source, num_target = seen["ctx"].source.num_classes, len(seen["ctx"].target)
    assert memory["features"].shape[0] == num_source + num_target
    assert torch.allclose(memory["features"].norm(dim=1), torch.ones(len(memory["features"])),
                          atol=1e-5)
    labels = state["step"]["labels"].numpy()
    assert torch.equal(memory["groups"][:num_source], torch.arange(num_source))
    groups = memory["groups"][num_source:].numpy()
    assert adjusted_rand_score(labels[labels >= 0], groups[labels >= 0]) == 1.0
    alone = groups[labels < 0]  # each un-clustered instance a group of its own
    assert len(set(alone)) == len(alone) and not set(alone) & set(groups[labels >= 0])
    # DSBN: the source BatchNorms are training-only modules of the checkpoint
    assert any("other_domains" in name for name in state["meta"]["training_modules"])


def test_the_label_guard_holds_for_spcl(full_run):
    root, _, _, seen = full_run
    assert_label_guard(seen, root, TARGET)


def test_resume_after_a_kill_gives_the_uninterrupted_result(full_run, tmp_path, monkeypatch):
    root, cache, full, _ = full_run
    resumed = killed_then_resumed(
        SpCLStep, lambda *extra: run_tool(root, cache, tmp_path, *extra), monkeypatch)
    assert resumed["metrics"] == full["metrics"]
    assert [{k: v for k, v in r.items() if k != "seconds"}
            for r in resumed["stages"][1]["rounds"]] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in full["stages"][1]["rounds"]]
    memories = [torch.load(folder / "last.pth", weights_only=False)["step"]["memory"]
                for folder in (cache / "full", tmp_path)]
    assert all(torch.equal(memories[0][k], memories[1][k]) for k in ("features", "groups"))


@pytest.mark.parametrize("source,target", [
    ("market", "duke"), ("duke", "market"), ("market", "msmt"), ("duke", "msmt"),
    ("synth-market", "synth-duke"), ("synth-duke", "synth-market")])
def test_recipes_have_the_official_values_and_share_the_cluster_stage1(source, target):
    from uda_reid.adapt.pipeline import build_adapt_config, build_method, source_key

    cfg, cluster = (build_adapt_config(source, target, m, None, "/tmp/unused", [])
                    for m in ("spcl", "cluster"))
    method = build_method(cfg)
    assert type(method) is SpCL and source_key(cfg) == source_key(cluster)
    assert (method.temperature, method.momentum, method.self_paced, method.indep_quantile,
            method.num_instances, method.domain_bn) == (0.05, 0.2, True, 0.9, 4, True)
    # the official sampler prefers other cameras; the synthetic recipes keep the sampling
    # they were chosen with
    assert method.camera_aware == (not source.startswith("synth"))
    eps = cluster.ADAPT.CLUSTER.EPS[0]  # the synthetic eps: chosen on the development domains
    assert method.labeler.granularities == pytest.approx((eps - 0.02, eps, eps + 0.02))
    solver = cfg.ADAPT.SOLVER
    assert (solver.OPT, solver.WEIGHT_DECAY, solver.IMS_PER_BATCH) == ("Adam", 5e-4, 64)
    if not source.startswith("synth"):  # the synthetic BASE_LR: chosen on the development domains
        assert solver.BASE_LR == 3.5e-4
        assert eps == 0.6 and (cfg.ADAPT.CLUSTER.K1, cfg.ADAPT.CLUSTER.K2) == (30, 6)
        assert (solver.MAX_EPOCH, solver.STEPS, solver.AMP) == (50, (20, 40), False)
        assert solver.ITERS_PER_EPOCH == (800 if target == "msmt" else 400)
        assert cfg.MODEL.HEADS.NECK_FEAT == "after"
