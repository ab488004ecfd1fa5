"""Cluster Contrast: the memory loss against a hand computation, the mean / hardest momentum
updates against slow loops, checkpointing of the resizable memory, the label guard, and
tools/adapt.py --method cluster_contrast end to end with an exact resume after a kill."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from method_runs import assert_label_guard, killed_then_resumed, recorded_run
from uda_reid.adapt.cluster_memory import (ClusterMemory, hardest_update, mean_update,
                                           memory_contrastive_loss)
from uda_reid.adapt.methods.cluster_contrast import (ClusterContrast, ClusterContrastStep,
                                                     mean_pairwise_cosine)
from uda_reid.data.loaders import collate
from tiny_runs import tiny_stage1

_spec = importlib.util.spec_from_file_location(
    "adapt_tool_cc", Path(__file__).resolve().parents[1] / "tools" / "adapt.py")
adapt_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adapt_tool)
TARGET = "synth-duke"
RECIPE = (Path(__file__).resolve().parents[1] / "configs" / "cluster_contrast"
          / "synth-market2synth-duke.yml")


def test_memory_loss_matches_a_hand_computation():
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # normalised: (0.6, 0.8), (0, 1)
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    tau = 0.5
    # sample 0: logits (0.6, 0.8) / 0.5 = (1.2, 1.6), label 0; sample 1: (0, 2), label 1
    hand = 0.5 * ((-1.2 + math.log(math.exp(1.2) + math.exp(1.6)))
                  + (-2.0 + math.log(1.0 + math.exp(2.0))))
    loss = memory_contrastive_loss(features, labels, centroids, tau)
    assert float(loss) == pytest.approx(hand, rel=1e-6)
    memory = ClusterMemory(2, temperature=tau)
    memory.reset(centroids)
    assert float(memory(features, labels)) == pytest.approx(hand, rel=1e-6)


def slow_mean(centroids, features, labels, m):
    c = centroids.clone()
    for x, y in zip(F.normalize(features, dim=1), labels.tolist()):
        c[y] = m * c[y] + (1 - m) * x
        c[y] = c[y] / c[y].norm()
    return c


def slow_hardest(centroids, features, labels, m):
    c = centroids.clone()
    x = F.normalize(features, dim=1)
    for y in sorted(set(labels.tolist())):
        rows = [i for i in range(len(labels)) if labels[i] == y]
        sims = [float(x[i] @ centroids[y]) for i in rows]
        hard = rows[int(np.argmin(sims))]
        c[y] = m * centroids[y] + (1 - m) * x[hard]
        c[y] = c[y] / c[y].norm()
    return c


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_momentum_updates_match_slow_loops(momentum):
    g = torch.Generator().manual_seed(0)
    centroids = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    features = torch.randn(12, 8, generator=g)
    labels = torch.tensor([0, 2, 2, 4, 0, 2, 1, 4, 0, 2, 4, 4])  # cluster 3 absent
    for fast, slow in [(mean_update, slow_mean), (hardest_update, slow_hardest)]:
        got = fast(centroids, features, labels, momentum)
        assert torch.allclose(got, slow(centroids, features, labels, momentum), atol=1e-6)
        assert torch.equal(got[3], centroids[3])
        assert torch.allclose(got.norm(dim=1), torch.ones(5), atol=1e-6)
    # the two variants differ: cluster 2 has four samples
    assert not torch.allclose(mean_update(centroids, features, labels, momentum)[2],
                              hardest_update(centroids, features, labels, momentum)[2])


def test_mean_pairwise_cosine_matches_a_loop_over_pairs():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(7, 5, generator=g)
    x = F.normalize(features, dim=1)
    pairs = [float(x[i] @ x[j]) for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_cosine(features) == pytest.approx(float(np.mean(pairs)), abs=1e-6)
    assert mean_pairwise_cosine(features.abs() + 5) > 0.9  # one orthant, far from the origin


def test_memory_initialises_updates_and_checkpoints_with_a_new_cluster_count():
    memory = ClusterMemory(3, momentum=0.2, mode="mean")
    memory.reset(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]))
    assert torch.allclose(memory.centroids, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    memory.update(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0]))
    expected = F.normalize(torch.tensor([[0.2, 0.8, 0.0]]), dim=1)
    assert torch.allclose(memory.centroids[0], expected[0])
    other = ClusterMemory(3, mode="mean")
    other.reset(torch.ones(7, 3))
    other.load_state_dict(memory.state_dict())
    assert torch.equal(other.centroids, memory.centroids)
    with pytest.raises(ValueError, match="ADAPT.CC.MODE"):
        ClusterMemory(3, mode="median")


def run_tool(data_root, cache, out, *extra, source="synth-market", method="cluster_contrast"):
    argv = ["--source", source, "--target", TARGET, "--method", method,
            "--config-file", str(RECIPE), "--output-dir", str(out),
            *tiny_stage1(data_root, cache),
            "ADAPT.SOLVER.OPT", "Adam", "ADAPT.SOLVER.BASE_LR", "3.5e-4",
            "ADAPT.SOLVER.IMS_PER_BATCH", "8", "ADAPT.SOLVER.MAX_EPOCH", "2",
            "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.SOLVER.STEPS", "[1]",
            "ADAPT.CC.NUM_INSTANCES", "2", "ADAPT.CC.MODE", "hardest",
            "ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.CLUSTER.K1", "6", "ADAPT.CLUSTER.K2", "2",
            "ADAPT.CLUSTER.MIN_SAMPLES", "2",
            "TEST.EVAL_PERIOD", "2", "ADAPT.SOLVER.CHECKPOINT_PERIOD", "1", *extra]
    assert adapt_tool.main(argv) == 0
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted run, with what the method was handed (context, options, batches)."""
    root, cache = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("cache")
    results, seen = recorded_run(ClusterContrast, lambda: run_tool(root, cache, cache / "full"))
    return root, cache, results, seen


def test_tool_trains_with_the_memory_and_reports_rounds(full_run):
    root, cache, results, _ = full_run
    stage = results["stages"][1]
    assert [s["name"] for s in results["stages"]] == ["source", "cluster_contrast"]
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    assert all(r["num_clusters"] > 1 and r["idle"] is False for r in stage["rounds"])
    assert all(c["loss_cluster_contrast"] > 0 for c in stage["curves"])
    # the pipeline scores the labels the method reported against the hidden identities
    for quality, record in zip(stage["label_quality"], stage["rounds"]):
        (scores,) = quality["granularities"]
        assert scores["num_clusters"] == record["num_clusters"]
    assert all(0.0 <= v <= 1.0 for v in results["metrics"][TARGET].values())
    state = torch.load(cache / "full" / "last.pth", weights_only=False)
    memory = state["step"]["memory"]["centroids"]  # the memory is checkpointed
    assert memory.shape[0] == stage["rounds"][-1]["num_clusters"]
    assert torch.allclose(memory.norm(dim=1), torch.ones(len(memory)), atol=1e-5)


def test_the_label_guard_holds_for_cluster_contrast(full_run):
    root, _, _, seen = full_run
    assert_label_guard(seen, root, TARGET)


def test_resume_after_a_kill_gives_the_uninterrupted_result(full_run, tmp_path, monkeypatch):
    root, cache, full, _ = full_run
    resumed = killed_then_resumed(ClusterContrastStep,
                                  lambda *extra: run_tool(root, cache, tmp_path, *extra),
                                  monkeypatch)
    assert resumed["metrics"] == full["metrics"]

    def rounds(results):
        return [{k: v for k, v in r.items() if k != "seconds"}
                for r in results["stages"][1]["rounds"]]

    assert rounds(resumed) == rounds(full)


class VectorImages(torch.utils.data.Dataset):
    """Item i: its "image" is the row ``vectors[i]`` (a (D, 1, 1) tensor)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def __len__(self):
        return len(self.vectors)

    def __getitem__(self, i):
        return {"images": self.vectors[i].view(-1, 1, 1), "pids": -1, "camids": 0, "indexes": i}


class ReadOut(torch.nn.Module):
    """The image as its own feature (scaled by one trainable weight)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, images):
        x = images.flatten(1) * self.scale
        return {"embedding": x, "features": x} if self.training else x


def test_step_pairs_each_batch_row_with_its_own_pseudo_label_and_memory_row():
    """Rows of the PK batch, their pseudo-labels, the centroids built from the round's
    features and the rows the momentum update moves must all refer to the same images."""
    g = torch.Generator().manual_seed(0)
    n, d = 24, 6
    vectors = torch.randn(n, d, generator=g)
    labels = np.array([(7 * i) % 5 if i % 6 else -1 for i in range(n)])  # 5 clusters, outliers
    result = type("Result", (), {"labels": labels, "num_clusters": 5, "num_outliers": 4,
                                 "degenerate": None})()
    data = VectorImages(vectors)
    loader = torch.utils.data.DataLoader(data, batch_size=5, collate_fn=collate)
    memory = ClusterMemory(d, temperature=0.1, momentum=0.3)
    step = ClusterContrastStep(ReadOut(), memory, lambda feats: (result,), data, loader,
                               batch_size=8, num_instances=2)
    step.begin_epoch(0)
    unit = F.normalize(vectors, dim=1)
    centroids = torch.stack([F.normalize(unit[labels == k].mean(0), dim=0) for k in range(5)])
    assert torch.allclose(memory.centroids, centroids, atol=1e-6)
    seen = {}
    stream_next = step.target.next
    step.target.next = lambda: seen.setdefault("batch", stream_next())
    model = step.model.train()
    loss = step.run(model)["loss_cluster_contrast"]
    rows = seen["batch"]["indexes"]
    batch_labels = torch.as_tensor(labels[rows.numpy()])
    assert (batch_labels >= 0).all()
    assert float(loss.detach()) == pytest.approx(float(memory_contrastive_loss(
        vectors[rows], batch_labels, centroids, 0.1)), rel=1e-6)
    step.after_update(model)
    assert torch.allclose(memory.centroids, slow_mean(centroids, vectors[rows], batch_labels, 0.3),
                          atol=1e-6)


def only_target_generated(data_root):
    """Whether the synthetic data under ``data_root`` is the target's alone (with its lock)."""
    names = {p.name.lstrip(".") for p in data_root.iterdir()}
    return names == {f"{TARGET}-tiny-s0", f"{TARGET}-tiny-s0.lock"}


def test_source_none_adapts_the_start_model_without_any_source_image(full_run, tmp_path):
    """--source none: no stage 1 (nothing cached), no source image generated or read (the
    synthetic source would generate itself under the data root), the start model is
    MODEL.WEIGHTS (the stage-1 model of ``full_run``: same target metrics as its direct
    transfer), its target metrics are the "before" row, and the label guard holds."""
    _, cache, full, _ = full_run
    (stage1,) = [p for p in cache.iterdir() if p.name.startswith("synth-market-")]
    fresh, no_cache = tmp_path / "data", tmp_path / "cache"
    results, seen = recorded_run(ClusterContrast, lambda: run_tool(
        fresh, no_cache, tmp_path / "run", "MODEL.WEIGHTS", str(stage1 / "last.pth"),
        source="none"))
    assert seen["ctx"].source is None
    assert_label_guard(seen, fresh, TARGET)  # the guard holds without a source too
    assert results["source"] == "none"
    start, stage = results["stages"]
    assert (start["name"], stage["name"]) == ("start", "cluster_contrast")
    assert "not direct transfer" in start["note"]
    assert start["weights"] == str(stage1 / "last.pth")
    assert start["metrics"] == {TARGET: full["stages"][0]["metrics"][TARGET]}
    assert only_target_generated(fresh)
    assert not no_cache.exists()
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    assert results["metrics"][TARGET] == stage["metrics"][TARGET]
    assert results["metrics"] != {TARGET: start["metrics"][TARGET]}
    summary = (tmp_path / "run" / "log.txt").read_text().split("Summary: none -> synth-duke")[1]
    assert "start model (no source)" in summary and "direct" not in summary


def test_source_none_runs_the_cluster_baseline_from_random_weights(tmp_path):
    results = run_tool(tmp_path / "data", tmp_path / "cache", tmp_path / "run",
                       "ADAPT.PSEUDO_LABEL.NUM_INSTANCES", "2", source="none", method="cluster")
    start, stage = results["stages"]
    assert (start["name"], start["weights"], start["backbone_pretrain"]) == ("start", None, None)
    assert stage["name"] == "cluster" and len(stage["curves"]) == 2
    assert only_target_generated(tmp_path / "data")


@pytest.mark.parametrize("method, extra", [("ecn", []),
                                           ("cluster", ["ADAPT.PSEUDO_LABEL.MIXTURE", "True"])])
def test_source_none_refuses_a_method_that_trains_on_the_source(tmp_path, capsys, method, extra):
    argv = ["--source", "none", "--target", TARGET, "--method", method,
            "--config-file", str(RECIPE), "--output-dir", str(tmp_path / "run"),
            *tiny_stage1(tmp_path / "data", tmp_path / "cache"), *extra]
    assert adapt_tool.main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"ADAPT.METHOD {method} trains on labelled source images: it cannot "
                            "run with ADAPT.SOURCE none")
    assert not (tmp_path / "run").exists()
