"""tools/adapt.py --method cluster / mlt on tiny synthetic domains: both stages, per-round
monitoring in results.json and TensorBoard, degenerate rounds, the label guard."""
import importlib.util
import json
from pathlib import Path

import pytest

from uda_reid.adapt.guard import UnlabeledSamples
from uda_reid.adapt.methods.cluster import PseudoLabelStep

# loaded from its file: putting tools/ on sys.path would shadow the camstyle package with
# tools/camstyle.py for every test collected afterwards
_spec = importlib.util.spec_from_file_location(
    "adapt_tool", Path(__file__).resolve().parents[1] / "tools" / "adapt.py")
adapt_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adapt_tool)

TARGET = "synth-duke"
QUALITY = {"nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f", "num_clusters",
           "num_outliers", "num_classes", "degenerate", "labels", "granularity"}


def run_tool(data_root, out, method, *extra):
    argv = ["--source", "synth-market", "--target", TARGET, "--method", method,
            "--output-dir", str(out),
            "DATASETS.ROOT", str(data_root), "DATASETS.SYNTH_SCALE", "tiny",
            "ADAPT.SOURCE_CACHE", str(Path(data_root) / "source_models"), "MODEL.DEVICE", "cpu",
            "INPUT.SIZE_TRAIN", "(32, 16)", "INPUT.SIZE_TEST", "(32, 16)",
            "MODEL.HEADS.EMBEDDING_DIM", "32", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "2",
            "ADAPT.SOLVER.IMS_PER_BATCH", "8", "ADAPT.SOLVER.MAX_EPOCH", "2",
            "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.SOLVER.STEPS", "[1]",
            "ADAPT.MLT.NUM_INSTANCES", "2", "ADAPT.MLT.SOURCE_IMS_PER_BATCH", "8",
            "ADAPT.CLUSTER.K1", "6", "ADAPT.CLUSTER.K2", "2", "ADAPT.CLUSTER.MIN_SAMPLES", "2",
            "TEST.EVAL_PERIOD", "2", "ADAPT.SOLVER.CHECKPOINT_PERIOD", "1", *extra]
    assert adapt_tool.main(argv) == 0
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def guard_spy(monkeypatch):
    seen = {}
    original = PseudoLabelStep.pseudo_label_round

    def spy(self, epoch):
        record = original(self, epoch)
        seen.setdefault("types", set()).add(type(self.samples))
        seen.setdefault("pids", set()).update(s[1] for s in self.target.loader.dataset.samples)
        return record

    monkeypatch.setattr(PseudoLabelStep, "pseudo_label_round", spy)
    return seen


@pytest.mark.parametrize("method,eps,mixture", [("cluster", "[0.5]", "False"),
                                                ("mlt", "[0.4, 0.5, 0.6]", "True")])
def test_tool_runs_method_with_rounds_in_results_and_tensorboard(data_root, method, eps,
                                                                  mixture, guard_spy):
    results = run_tool(data_root, data_root / method, method, "ADAPT.CLUSTER.EPS", eps,
                       "ADAPT.MLT.TRIPLET_GRANULARITY", "0", "ADAPT.MLT.MIXTURE", mixture)
    assert results["method"] == method
    assert [s["name"] for s in results["stages"]] == ["source", method]
    stage = results["stages"][1]
    assert results["metrics"][TARGET] == stage["metrics"][TARGET]
    assert all(0.0 <= v <= 1.0 for v in stage["metrics"][TARGET].values())
    num = len(json.loads(eps))
    assert [r["epoch"] for r in stage["rounds"]] == [1, 2]
    for record in stage["rounds"]:
        assert len(record["granularities"]) == num
        for entry in record["granularities"]:
            assert set(entry) == QUALITY
            assert 0.0 <= entry["nmi"] <= 1.0
    losses = {"loss_target_ce", "loss_triplet"} | ({"loss_source_ce"} if mixture == "True"
                                                   else set())
    for curve in stage["curves"]:
        assert {f"pseudo{h}_nmi" for h in range(num)} <= set(curve)
    assert losses <= set(stage["curves"][0]) or "loss_idle" in stage["curves"][0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(data_root / method))
    events.Reload()
    for h in range(num):
        nmi = [e.value for e in events.Scalars(f"pseudo_labels/g{h}_nmi")]
        assert nmi == pytest.approx([r["granularities"][h]["nmi"] for r in stage["rounds"]])
    # the label guard: the method only ever held label-free target samples
    assert guard_spy == {"types": {UnlabeledSamples}, "pids": {-1}}


def test_degenerate_rounds_are_logged_and_training_goes_on(data_root, tmp_path):
    # no point has 500 neighbours: every sample is an outlier at both granularities
    results = run_tool(data_root, tmp_path, "mlt", "ADAPT.CLUSTER.EPS", "[0.5, 0.6]",
                       "ADAPT.CLUSTER.MIN_SAMPLES", "500", "ADAPT.MLT.MIXTURE", "False")
    stage = results["stages"][1]
    for record in stage["rounds"]:
        assert [g["labels"] for g in record["granularities"]] == ["inactive", "inactive"]
        assert all("outliers" in g["degenerate"] for g in record["granularities"])
    assert [c["epoch"] for c in stage["curves"]] == [1, 2]
    assert all(c["loss_idle"] == 0.0 for c in stage["curves"])
    assert TARGET in results["metrics"]
    assert "DEGENERATE" in (tmp_path / "log.txt").read_text()


def killed_in_epoch_two_then_resumed(data_root, out, method, extra, monkeypatch):
    """Results of a run killed during its second epoch, then resumed with ``--resume``."""
    run = PseudoLabelStep.run

    def killed_in_epoch_two(self, model):
        if len(self.rounds) == 2:
            raise KeyboardInterrupt("killed")
        return run(self, model)

    monkeypatch.setattr(PseudoLabelStep, "run", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_tool(data_root, out, method, *extra)
    monkeypatch.setattr(PseudoLabelStep, "run", run)
    return run_tool(data_root, out, method, "--resume", *extra)


def test_resume_after_a_kill_gives_the_uninterrupted_result(data_root, tmp_path, monkeypatch):
    extra = ("ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.MLT.TRIPLET_GRANULARITY", "0",
             "ADAPT.MLT.MIXTURE", "False")  # the cluster run of the test above
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


def test_an_adapted_checkpoint_tests_alone_to_its_reported_metrics(data_root, tmp_path):
    from uda_reid.config import load_config
    from uda_reid.engine.defaults import test

    extra = ("ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.MLT.TRIPLET_GRANULARITY", "0",
             "ADAPT.MLT.MIXTURE", "False")  # the cluster run of the first test
    out = data_root / "cluster"
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() \
        else run_tool(data_root, out, "cluster", *extra)
    # the checkpoint holds the pseudo-label classifiers; the test tool leaves them out
    cfg = load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "last.pth"),
                                            "DATASETS.TESTS", f"['{TARGET}']",
                                            "OUTPUT_DIR", str(tmp_path)])
    metrics = test(cfg)
    assert metrics[TARGET] == pytest.approx(results["metrics"][TARGET], abs=1e-6)
