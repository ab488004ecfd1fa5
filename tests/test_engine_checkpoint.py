"""Checkpoints: atomic writes, identity checks, weight loading; results.json; RNG capture."""
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from uda_reid.engine.checkpoint import (Checkpointer, identity_diff, load_model_weights,
                                       read_checkpoint_meta)
from uda_reid.engine.results import build_results, read_results, write_results
from uda_reid.engine.seed import get_rng_states, set_rng_states


class ExplodesWhilePickled:
    """Pickling this fails after torch.save has already written part of the file."""

    def __reduce__(self):
        raise RuntimeError("disk full")


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path):
    ckpt = Checkpointer(tmp_path, {"SEED": 0})
    ckpt.save("last.pth", {"epoch": 1, "weights": torch.arange(5)})
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("last.pth", {"epoch": 2, "weights": torch.zeros(100_000),
                               "bad": ExplodesWhilePickled()})
    state = ckpt.load("last.pth")
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_identity_diff_names_changed_added_and_removed_keys():
    diff = identity_diff({"A": {"B": 1, "C": 2}}, {"A": {"B": 3, "D": 4}})
    assert diff == ["A.B: 1 -> 3", "A.C: 2 -> <absent>", "A.D: <absent> -> 4"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pth"):
        Checkpointer(tmp_path, {}).load("last.pth")


def test_load_model_weights_rejects_any_mismatch_when_strict(tmp_path):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save({"model": src.state_dict(), "epoch": 3, "meta": {"num_classes": 2}},
               tmp_path / "ckpt.pth")
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    report = load_model_weights(dst, tmp_path / "ckpt.pth")
    assert not (report.missing or report.unexpected or report.mismatched)
    assert torch.equal(dst[1].weight, src[1].weight)
    assert read_checkpoint_meta(tmp_path / "ckpt.pth") == {"num_classes": 2}

    wider = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    with pytest.raises(ValueError, match=r"1.weight.*\(2, 4\) vs \(5, 4\)"):
        load_model_weights(wider, tmp_path / "ckpt.pth")
    longer = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="missing.*2.weight"):
        load_model_weights(longer, tmp_path / "ckpt.pth")
    assert load_model_weights(longer, tmp_path / "ckpt.pth", strict=False).missing == [
        "2.weight", "2.bias"]
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        load_model_weights(dst, tmp_path / "nope.pth")


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    torch.save(get_rng_states(), tmp_path / "rng.pth")
    want = (random.random(), np.random.rand(3), torch.rand(3))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    set_rng_states(torch.load(tmp_path / "rng.pth", weights_only=True))
    got = (random.random(), np.random.rand(3), torch.rand(3))
    assert got[0] == want[0] and np.array_equal(got[1], want[1]) and torch.equal(got[2], want[2])


METRICS = {"synth-market": {"mAP": 0.71, "mINP": 0.3, "rank1": 0.9, "rank5": 0.96,
                            "rank10": 0.98}}


def test_results_round_trip_with_required_shape(tmp_path):
    results = build_results("train", "supervised", "synth-market", None, 0, METRICS, 12.3456,
                            stages=[{"name": "source", "metrics": METRICS}],
                            extra={"curves": {"1": METRICS}})
    path = write_results(tmp_path / "results.json", results)
    loaded = read_results(path)
    assert loaded == json.loads(json.dumps(results))
    assert list(loaded)[:10] == ["task", "method", "source", "target", "seed", "git_commit",
                                 "finished_at", "wall_seconds", "metrics", "stages"]
    assert loaded["wall_seconds"] == 12.346 and loaded["target"] is None
    assert loaded["finished_at"].endswith("+00:00")
    assert (loaded["torch_version"], loaded["torch_threads"]) == (torch.__version__,
                                                                  torch.get_num_threads())


def test_results_reject_percentages_and_missing_keys(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\['synth-market'\]\['mAP'\] = 71.0"):
        build_results("train", "supervised", "synth-market", None, 0,
                      {"synth-market": {"mAP": 71.0}}, 1.0)
    (tmp_path / "results.json").write_text(json.dumps({"task": "train"}))
    with pytest.raises(ValueError, match="results.json: missing keys"):
        read_results(tmp_path / "results.json")
