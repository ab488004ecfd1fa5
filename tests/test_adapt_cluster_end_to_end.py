"""tools/adapt.py --method cluster / mlt on tiny synthetic domains: both stages, per-round
monitoring in results.json and TensorBoard (the pipeline's pseudo-label scores), degenerate
rounds, resume."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from uda_reid.adapt.methods.cluster import PseudoLabelStep
from tiny_runs import tiny_stage1

# loaded from its file: putting tools/ on sys.path would shadow the camstyle package with
# tools/camstyle.py for every test collected afterwards
_spec = importlib.util.spec_from_file_location(
    "adapt_tool", Path(__file__).resolve().parents[1] / "tools" / "adapt.py")
adapt_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adapt_tool)

TARGET = "synth-duke"
ROUND = {"num_clusters", "num_outliers", "num_classes", "degenerate", "labels", "granularity"}
QUALITY = {"nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f", "num_clusters",
           "num_outliers"}


def run_tool(data_root, out, method, *extra):
    argv = ["--source", "synth-market", "--target", TARGET, "--method", method,
            "--output-dir", str(out),
            *tiny_stage1(data_root, Path(data_root) / "source_models"),
            "ADAPT.SOLVER.IMS_PER_BATCH", "8", "ADAPT.SOLVER.MAX_EPOCH", "2",
            "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.SOLVER.STEPS", "[1]",
            "ADAPT.PSEUDO_LABEL.NUM_INSTANCES", "2", "ADAPT.PSEUDO_LABEL.SOURCE_IMS_PER_BATCH", "8",
            "ADAPT.CLUSTER.K1", "6", "ADAPT.CLUSTER.K2", "2", "ADAPT.CLUSTER.MIN_SAMPLES", "2",
            # re-clustering every epoch, one BatchNorm (the recipes' transport and DSBN have
            # their own tests)
            "ADAPT.PSEUDO_LABEL.TRANSPORT", "none", "ADAPT.PSEUDO_LABEL.RECLUSTER_PERIOD", "1",
            "ADAPT.PSEUDO_LABEL.DSBN", "False",
            "TEST.EVAL_PERIOD", "2", "ADAPT.SOLVER.CHECKPOINT_PERIOD", "1", *extra]
    assert adapt_tool.main(argv) == 0
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.parametrize("method,eps,mixture", [("cluster", "[0.5]", "False"),
                                                ("mlt", "[0.4, 0.5, 0.6]", "True")])
def test_tool_runs_method_with_rounds_in_results_and_tensorboard(data_root, method, eps,
                                                                  mixture):
    results = run_tool(data_root, data_root / method, method, "ADAPT.CLUSTER.EPS", eps,
                       "ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY", "0",
                       "ADAPT.PSEUDO_LABEL.MIXTURE", mixture)
    assert results["method"] == method
    assert [s["name"] for s in results["stages"]] == ["source", method]
    stage = results["stages"][1]
    assert results["metrics"][TARGET] == stage["metrics"][TARGET]
    assert all(0.0 <= v <= 1.0 for v in stage["metrics"][TARGET].values())
    num = len(json.loads(eps))
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    for record in stage["rounds"]:  # the method's own, label-free record
        assert len(record["granularities"]) == num
        for entry in record["granularities"]:
            assert set(entry) == ROUND
    # the pipeline's scores of the labels each epoch trained on
    assert [r["epoch"] for r in stage["label_quality"]] == [1, 2]
    for quality, record in zip(stage["label_quality"], stage["rounds"]):
        assert len(quality["granularities"]) == num
        for scores, entry in zip(quality["granularities"], record["granularities"]):
            assert set(scores) == QUALITY and 0.0 <= scores["nmi"] <= 1.0
            if entry["labels"] == "new":
                assert scores["num_clusters"] == entry["num_clusters"]
    losses = {"loss_target_ce", "loss_triplet"} | ({"loss_source_ce"} if mixture == "True"
                                                   else set())
    for curve in stage["curves"]:
        assert {f"pseudo{h}_num_clusters" for h in range(num)} <= set(curve)
    assert losses <= set(stage["curves"][0]) or "loss_idle" in stage["curves"][0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(data_root / method))
    events.Reload()
    for h in range(num):
        nmi = [e.value for e in events.Scalars(f"pseudo_labels/g{h}_nmi")]
        assert nmi == pytest.approx([r["granularities"][h]["nmi"]
                                     for r in stage["label_quality"]])
    assert sorted(p.name for p in (data_root / method).glob("*.pth")) == ["last.pth"]


@pytest.mark.parametrize("method,extra", [
    # no point has 500 neighbours: every sample is an outlier at every granularity
    ("mlt", ("ADAPT.CLUSTER.EPS", "[0.5, 0.6]", "ADAPT.CLUSTER.MIN_SAMPLES", "500")),
    ("cluster", ("ADAPT.CLUSTER.EPS", "(0.5,)", "ADAPT.CLUSTER.MIN_SAMPLES", "500"))])
def test_degenerate_rounds_are_logged_and_leave_the_model_untouched(data_root, tmp_path, method,
                                                                    extra):
    results = run_tool(data_root, tmp_path, method, *extra, "ADAPT.PSEUDO_LABEL.MIXTURE", "False")
    stage = results["stages"][1]
    num = 2 if method == "mlt" else 1
    for record in stage["rounds"]:
        assert [g["labels"] for g in record["granularities"]] == ["inactive"] * num
        assert all("outliers" in g["degenerate"] for g in record["granularities"])
        assert record["idle"] is True
    assert stage["degenerate_rounds"] == 2 and stage["idle_rounds"] == 2
    assert [c["epoch"] for c in stage["curves"]] == [1, 2]
    assert all(c["total"] == 0.0 for c in stage["curves"])
    assert "DEGENERATE" in (tmp_path / "log.txt").read_text()
    # no optimiser step (weight decay would move every weight) and no forward pass in train
    # mode (BatchNorm running statistics): the adapted model is the source model, bit for bit
    source = torch.load(Path(results["stages"][0]["cache"]) / "last.pth",
                        weights_only=True)["model"]
    adapted = torch.load(tmp_path / "last.pth", weights_only=True)["model"]
    assert any(k.endswith("running_mean") for k in source)
    for key, value in source.items():
        assert torch.equal(adapted[key], value), key
    assert results["metrics"][TARGET] == results["stages"][0]["metrics"][TARGET]


def killed_in_epoch_two_then_resumed(data_root, out, method, extra, monkeypatch,
                                     between=lambda out: None, resume_extra=None):
    """Results of a run killed during its second epoch, then (after ``between(out)``) resumed
    with ``--resume`` and ``resume_extra`` (default ``extra``)."""
    run = PseudoLabelStep.run

    def killed_in_epoch_two(self, model):
        if len(self.rounds) == 2:
            raise KeyboardInterrupt("killed")
        return run(self, model)

    monkeypatch.setattr(PseudoLabelStep, "run", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_tool(data_root, out, method, *extra)
    monkeypatch.setattr(PseudoLabelStep, "run", run)
    between(out)
    return run_tool(data_root, out, method, "--resume",
                    *(extra if resume_extra is None else resume_extra))


def test_resume_after_a_kill_gives_the_uninterrupted_result(data_root, tmp_path, monkeypatch):
    extra = ("ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY", "0",
             "ADAPT.PSEUDO_LABEL.MIXTURE", "False")  # the cluster run of the test above
    done = data_root / "cluster" / "results.json"
    full = json.loads(done.read_text()) if done.is_file() else \
        run_tool(data_root, data_root / "cluster", "cluster", *extra)
    resumed = killed_in_epoch_two_then_resumed(data_root, tmp_path / "killed", "cluster", extra,
                                               monkeypatch)
    assert resumed["metrics"] == full["metrics"]

    def rounds(results):  # the round records without their timings
        return [{k: v for k, v in r.items() if k != "seconds"}
                for r in results["stages"][1]["rounds"]]

    assert rounds(resumed) == rounds(full) and [r["epoch"] for r in rounds(full)] == [1, 2]


def as_saved_before_the_rename(out):
    """Turn the run folder ``out`` into one written before ADAPT.PSEUDO_LABEL was renamed from
    ADAPT.MLT: its config.yaml and the config identity in last.pth use the old name."""
    def renamed(data):
        data["ADAPT"]["MLT"] = data["ADAPT"].pop("PSEUDO_LABEL")
        return data

    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(renamed(yaml.safe_load(config.read_text())),
                                     sort_keys=False))
    state = torch.load(out / "last.pth", weights_only=False)
    torch.save(dict(state, identity=renamed(state["identity"])), out / "last.pth")


def test_a_killed_run_saved_under_the_old_section_name_resumes_to_the_same_result(
        data_root, tmp_path, monkeypatch):
    extra = ("ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY", "0",
             "ADAPT.PSEUDO_LABEL.MIXTURE", "False")  # the cluster run of the first test
    done = data_root / "cluster" / "results.json"
    full = json.loads(done.read_text()) if done.is_file() else \
        run_tool(data_root, data_root / "cluster", "cluster", *extra)
    old_names = [v.replace("ADAPT.PSEUDO_LABEL.", "ADAPT.MLT.") for v in extra]
    resumed = killed_in_epoch_two_then_resumed(data_root, tmp_path / "old", "cluster", extra,
                                               monkeypatch, as_saved_before_the_rename,
                                               old_names)
    assert resumed["metrics"] == full["metrics"]
    assert "PSEUDO_LABEL:" in (tmp_path / "old" / "config.yaml").read_text()


def test_an_adapted_checkpoint_tests_alone_to_its_reported_metrics(data_root, tmp_path):
    from uda_reid.config import load_config
    from uda_reid.engine.flows import test

    extra = ("ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY", "0",
             "ADAPT.PSEUDO_LABEL.MIXTURE", "False")  # the cluster run of the first test
    out = data_root / "cluster"
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() \
        else run_tool(data_root, out, "cluster", *extra)
    # the checkpoint holds the pseudo-label classifiers; the test tool leaves them out
    cfg = load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "last.pth"),
                                            "DATASETS.TESTS", f"['{TARGET}']",
                                            "OUTPUT_DIR", str(tmp_path)])
    metrics = test(cfg)
    assert metrics[TARGET] == pytest.approx(results["metrics"][TARGET], abs=1e-6)
