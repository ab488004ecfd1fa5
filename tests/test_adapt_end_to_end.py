"""tools/adapt.py flow on tiny synthetic domains: stages, metrics, curves, cache reuse, the
camstyle contract, resume after a kill, the last model kept and the closing summary (the label
guard: test_adapt_guard.py)."""
import json
from pathlib import Path

import pytest
import torch

from camstyle_standins import write_standins
from uda_reid.adapt.camstyle_data import CamStyleMissingError
from uda_reid.adapt.methods.ecn import ECNStep
from uda_reid.adapt.pipeline import build_adapt_config, run_adaptation, source_cache_dir
from uda_reid.adapt.summary import adaptation_summary
from uda_reid.data.datasets import build_dataset
from tiny_runs import tiny_stage1

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ecn" / "synth-market2synth-duke.yml"
TARGET = "synth-duke"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    target = build_dataset(TARGET, str(root), "tiny", 0)
    write_standins(Path(target.root), target.train, target.num_cameras)
    return root


def tiny_config(data_root, out, method="ecn", *extra):
    return build_adapt_config(
        "synth-market", TARGET, method, str(CONFIG), str(out),
        [*tiny_stage1(data_root, Path(data_root) / "source_models"),
         "ADAPT.SOLVER.IMS_PER_BATCH", "16", "ADAPT.SOLVER.MAX_EPOCH", "2",
         "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.SOLVER.STEPS", "[1]",
         "ADAPT.SOLVER.CHECKPOINT_PERIOD", "1", "ADAPT.ECN.TARGET_IMS_PER_BATCH", "16",
         "ADAPT.ECN.NEIGHBOR_START_EPOCH", "1", "TEST.EVAL_PERIOD", "1", *extra])


@pytest.fixture(scope="module")
def ecn_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ecn")
    return out, run_adaptation(tiny_config(data_root, out))


def test_ecn_run_writes_both_stages_metrics_curves_and_tensorboard(ecn_run):
    out, results = ecn_run
    assert json.loads((out / "results.json").read_text()) == results
    assert (results["task"], results["method"], results["source"], results["target"]) == \
        ("adapt", "ecn", "synth-market", TARGET)
    assert [s["name"] for s in results["stages"]] == ["source", "ecn"]
    source, ecn = results["stages"]
    assert set(source["metrics"]) == {"synth-market", TARGET} and not source["reused"]
    for metrics in (results["metrics"][TARGET], source["metrics"][TARGET]):
        assert set(metrics) >= {"mAP", "mINP", "rank1", "rank5", "rank10"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert results["metrics"][TARGET] == ecn["metrics"][TARGET]
    assert [c["epoch"] for c in ecn["curves"]] == [1, 2]
    for curve in ecn["curves"]:
        assert TARGET in curve["metrics"]
        assert {"loss_source", "loss_target", "memory_filled", "own_slot_sim"} <= set(curve)
    assert [c["neighbors"] for c in ecn["curves"]] == [0.0, 1.0]
    assert list(out.glob("events.out.tfevents*")) and (out / "last.pth").is_file()
    assert (out / "config.yaml").is_file()


def test_adaptation_keeps_the_last_model_and_no_target_selected_checkpoint(ecn_run):
    out, results = ecn_run
    assert sorted(p.name for p in out.glob("*.pth")) == ["last.pth"]
    last = torch.load(out / "last.pth", weights_only=False)
    assert last["epoch"] == results["stages"][1]["epochs"] == 2
    assert last["metrics"][2] == results["metrics"]  # reported = the last epoch's model
    assert not (out / "method_inputs").exists()  # the method's linked images are gone


def test_the_run_ends_with_a_summary_of_the_change_and_the_next_commands(ecn_run):
    out, results = ecn_run
    log = (out / "log.txt").read_text()
    summary = log[log.index("Summary: synth-market -> synth-duke, ecn"):]
    before = results["stages"][0]["metrics"][TARGET]
    after = results["metrics"][TARGET]
    direct, adapted, change = (line.split() for line in summary.splitlines()[2:5])
    assert direct[-2:] == [f"{100 * before['mAP']:.1f}", f"{100 * before['rank1']:.1f}"]
    assert adapted[-2:] == [f"{100 * after['mAP']:.1f}", f"{100 * after['rank1']:.1f}"]
    assert change[-2:] == [f"{100 * (after['mAP'] - before['mAP']):+.1f}",
                           f"{100 * (after['rank1'] - before['rank1']):+.1f}"]
    assert f"results: {out / 'results.json'}" in summary
    assert f"MODEL.WEIGHTS {out / 'last.pth'}" in summary
    assert f"tensorboard --logdir {out}" in summary
    assert "tools/adapt.py --source synth-market --target synth-duke --method mlt" in summary


@pytest.mark.parametrize("method, start, suggested", [
    ("adabn", "source", True), ("mlt", "source", False), ("ecn", "initial", False)])
def test_the_summary_suggests_the_cached_source_models_next_method(method, start, suggested):
    metrics = {TARGET: {"mAP": 0.3, "rank1": 0.5}}
    results = {"source": "synth-market", "target": TARGET, "method": method, "seed": 0,
               "wall_seconds": 61.0, "metrics": metrics,
               "stages": [{"name": start, "metrics": metrics}, {"name": method}]}
    summary = adaptation_summary(results, Path("out"))
    assert ("--method mlt  # reuses the source model when cached" in summary) is suggested
    assert "wall time 1 min 01 s" in summary


def test_direct_transfer_reuses_the_cached_source_model(data_root, ecn_run, tmp_path):
    _, ecn = ecn_run
    results = run_adaptation(tiny_config(data_root, tmp_path, "direct"))
    assert [s["name"] for s in results["stages"]] == ["source"]
    assert results["stages"][0]["reused"]
    assert results["metrics"][TARGET] == ecn["stages"][0]["metrics"][TARGET]


def test_resume_continues_a_killed_adaptation_with_its_memory(data_root, ecn_run, tmp_path,
                                                              monkeypatch):
    out_full, full = ecn_run
    run = ECNStep.run

    def killed_in_epoch_two(self, model):
        if self.epoch == 1:
            raise KeyboardInterrupt("killed")
        return run(self, model)

    monkeypatch.setattr(ECNStep, "run", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_adaptation(tiny_config(data_root, tmp_path))
    monkeypatch.setattr(ECNStep, "run", run)
    resumed = run_adaptation(tiny_config(data_root, tmp_path), resume=True)
    assert resumed["metrics"] == full["metrics"]
    a = torch.load(tmp_path / "last.pth", weights_only=True)["step"]["objective"]
    b = torch.load(out_full / "last.pth", weights_only=True)["step"]["objective"]
    assert torch.equal(a["memory.slots"], b["memory.slots"])


def test_missing_camstyle_stops_early_with_the_command_unless_disabled(data_root, tmp_path,
                                                                       caplog):
    other_seed = ["DATASETS.SYNTH_SEED", "1", "SOLVER.MAX_EPOCH", "1"]
    cfg = tiny_config(data_root, tmp_path / "a", "ecn", *other_seed, "ADAPT.ECN.CAMSTYLE", "True")
    with pytest.raises(CamStyleMissingError, match="tools/camstyle.py generate --dataset"):
        run_adaptation(cfg)
    assert not source_cache_dir(cfg).exists()  # stopped before stage 1
    cfg = tiny_config(data_root, tmp_path / "b", "ecn", *other_seed, "ADAPT.ECN.CAMSTYLE",
                      "False", "ADAPT.SOLVER.MAX_EPOCH", "1")
    results = run_adaptation(cfg)
    assert [s["name"] for s in results["stages"]] == ["source", "ecn"]
    assert "WITHOUT camera invariance" in (tmp_path / "b" / "log.txt").read_text()
