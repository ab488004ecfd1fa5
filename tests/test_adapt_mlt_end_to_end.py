"""tools/adapt.py --method mlt with every published piece on: k-means granularities, label
transport between re-clusterings, DSBN on the mixed batch and a mean teacher; exact resume;
the exported checkpoint is the evaluated teacher with the target's BatchNorm."""

import pytest
import torch

from test_adapt_cluster_end_to_end import TARGET, killed_in_epoch_two_then_resumed, run_tool

FULL = ("ADAPT.CLUSTER.BACKEND", "kmeans", "ADAPT.CLUSTER.NUM_CLUSTERS", "[8, 12]",
        "ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY", "0", "ADAPT.PSEUDO_LABEL.MIXTURE", "True",
        "ADAPT.PSEUDO_LABEL.DSBN", "True", "ADAPT.PSEUDO_LABEL.MEAN_TEACHER", "True",
        "ADAPT.PSEUDO_LABEL.TEACHER_MOMENTUM", "0.9", "ADAPT.PSEUDO_LABEL.TRANSPORT", "epoch",
        "ADAPT.PSEUDO_LABEL.RECLUSTER_PERIOD", "2", "ADAPT.SOLVER.MAX_EPOCH", "3")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def full_run(data_root):
    out = data_root / "mlt_full"
    return out, run_tool(data_root, out, "mlt", *FULL)


def rounds(results):  # the round records without their timings
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in results["stages"][1]["rounds"]]


def test_rounds_alternate_clustering_and_transport(full_run):
    _, results = full_run
    records = rounds(results)
    assert [(r["epoch"], r["round"]) for r in records] == [(1, "cluster"), (2, "transport"),
                                                           (3, "cluster")]
    assert [g["num_clusters"] for g in records[0]["granularities"]] == [8, 12]
    for entry in records[1]["granularities"]:
        assert entry["error"] <= 1e-3 and entry["iterations"] >= 1
        assert 0.0 <= entry["changed"] <= 1.0
        assert entry["num_outliers"] == 0
    # the pipeline scores the transported labels of epoch 2 like the clustered ones
    quality = results["stages"][1]["label_quality"]
    assert [q["epoch"] for q in quality] == [1, 2, 3]
    for scores, entry in zip(quality[1]["granularities"], records[1]["granularities"]):
        assert 0.0 <= scores["nmi"] <= 1.0 and scores["num_clusters"] == entry["num_clusters"]
    assert {"loss_target_ce", "loss_source_ce", "loss_triplet"} <= \
        set(results["stages"][1]["curves"][0])


def test_checkpoint_holds_the_teacher_with_two_batchnorm_sets(full_run):
    out, _ = full_run
    state = torch.load(out / "last.pth", map_location="cpu", weights_only=False)
    hook = state["hooks"]["MeanTeacherHook"]
    assert hook["swapped"] is True  # the model slot holds the teacher, the hook the student
    student = hook["mean_teacher"]["teacher"]
    model = state["model"]
    key = "backbone.bn1.running_mean"
    assert not torch.allclose(model[key], student[key])
    # both domains' statistics were trained, apart
    assert not torch.allclose(model[key], model["backbone.bn1.other_domains.source.running_mean"],
                              atol=1e-3)
    skipped = state["meta"]["training_modules"]
    assert "pseudo_classifiers" in skipped and "backbone.bn1.other_domains" in skipped


def test_the_exported_teacher_tests_alone_to_its_reported_metrics(full_run, tmp_path):
    from uda_reid.config import load_config
    from uda_reid.engine.flows import test

    out, results = full_run
    cfg = load_config(out / "config.yaml", ["MODEL.WEIGHTS", str(out / "last.pth"),
                                            "DATASETS.TESTS", f"['{TARGET}']",
                                            "OUTPUT_DIR", str(tmp_path)])
    metrics = test(cfg)  # a plain model: target BatchNorm only, no classifiers
    assert metrics[TARGET] == pytest.approx(results["metrics"][TARGET], abs=1e-6)


def test_resume_after_a_kill_in_a_transport_epoch_gives_the_uninterrupted_result(
        data_root, full_run, tmp_path, monkeypatch):
    _, full = full_run
    resumed = killed_in_epoch_two_then_resumed(data_root, tmp_path / "killed", "mlt", FULL,
                                               monkeypatch)
    assert resumed["metrics"] == full["metrics"]
    assert rounds(resumed) == rounds(full)
    assert resumed["stages"][1]["curves"] == full["stages"][1]["curves"]


def test_dsbn_without_a_mixed_batch_is_a_config_error():
    from uda_reid.adapt.methods.cluster import ClusterAdaptation
    from uda_reid.config import get_default_config

    cfg = get_default_config()
    cfg.ADAPT.PSEUDO_LABEL.MIXTURE, cfg.ADAPT.PSEUDO_LABEL.DSBN = False, True
    with pytest.raises(ValueError, match="DSBN needs ADAPT.PSEUDO_LABEL.MIXTURE"):
        ClusterAdaptation.from_config(cfg.ADAPT)
