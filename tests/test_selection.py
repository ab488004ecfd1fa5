"""Selection on the development domains: the reporting draw is refused, the clustering sweep
scores pseudo-labels as hand-computed, and the tool's scores are those the cluster method's
first round sees with the same source model."""
import json
from math import comb
from pathlib import Path

import numpy as np
import pytest

from uda_reid.adapt.pipeline import build_adapt_config, source_cache_dir
from uda_reid.config import ConfigError, get_default_config
from uda_reid.reproduce.selection import best_rows, require_development, sweep_clustering

from tool_loading import load_tool
from tiny_runs import tiny_stage1

select_tool = load_tool("select_cluster")


def dev_config(source="synth-market", target="synth-duke", synth_seed=1):
    cfg = get_default_config()
    cfg.ADAPT.SOURCE, cfg.ADAPT.TARGET = source, target
    cfg.DATASETS.SYNTH_SEED = synth_seed
    return cfg


def test_require_development_refuses_the_reporting_draw_and_real_data():
    require_development(dev_config(synth_seed=1))
    require_development(dev_config(synth_seed=2))
    with pytest.raises(ConfigError, match="SYNTH_SEED=0 is the reporting draw"):
        require_development(dev_config(synth_seed=0))
    with pytest.raises(ConfigError, match="ADAPT.TARGET=dukemtmc"):
        require_development(dev_config(target="dukemtmc"))


def test_development_and_reporting_draws_have_their_own_source_model():
    def cache(*overrides):
        return source_cache_dir(build_adapt_config("synth-market", "synth-duke", "direct",
                                                   overrides=list(overrides)))

    assert cache("DATASETS.SYNTH_SEED", "1") != cache("DATASETS.SYNTH_SEED", "0") == cache()
    assert cache("DATASETS.SYNTH_SEED", "1") == cache("DATASETS.SYNTH_SEED", "1", "TEST.FLIP",
                                                      "True")


def blobs(sizes, seed=0, dim=16):
    """Tight, far-apart groups of points: (N, dim) features and the group of each point."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * 5
    x = np.concatenate([c + 0.01 * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


def hand_ari(together, predicted, actual, n):
    """ARI from the pair counts of the contingency table, its rows and its columns."""
    expected = predicted * actual / comb(n, 2)
    return (together - expected) / ((predicted + actual) / 2 - expected)


def test_sweep_scores_the_dbscan_labels_against_the_true_ids():
    # groups of 8, 8 and 3: DBSCAN (min_samples 4) finds the two big ones and leaves the three
    # points as outliers, which count as singletons
    x, group = blobs([8, 8, 3])
    rows = sweep_clustering(x, group, [8, 10], [0.3, 0.5])
    assert [(r["k1"], r["eps"]) for r in rows] == [(8, 0.3), (8, 0.5), (10, 0.3), (10, 0.5)]
    for r in rows:
        assert (r["num_clusters"], r["num_outliers"]) == (2, 3)
        together = predicted = 2 * comb(8, 2)
        actual = 2 * comb(8, 2) + comb(3, 2)
        assert r["ari"] == pytest.approx(hand_ari(together, predicted, actual, 19))
        assert r["pairwise_precision"] == 1.0
        assert r["pairwise_recall"] == pytest.approx(together / actual)
    # true ids that join the first two groups: the same clusters score lower
    merged = np.where(group == 1, 0, group)
    row = sweep_clustering(x, merged, [8], [0.5])[0]
    assert row["ari"] == pytest.approx(hand_ari(2 * comb(8, 2), 2 * comb(8, 2),
                                                comb(16, 2) + comb(3, 2), 19))
    assert row["pairwise_recall"] == pytest.approx(2 * comb(8, 2) / (comb(16, 2) + comb(3, 2)))


def test_best_rows_order_by_the_criterion():
    rows = [{"ari": 0.2, "nmi": 0.9}, {"ari": 0.5, "nmi": 0.1}, {"ari": 0.5, "nmi": 0.3},
            {"ari": 0.1, "nmi": 0.5}]
    assert best_rows(rows, "ari", 2) == [rows[1], rows[2]]
    assert best_rows(rows, "nmi", 1) == [rows[0]]
    with pytest.raises(ConfigError, match="criterion 'map'"):
        best_rows(rows, "map")


def test_tool_refuses_the_reporting_draw_before_any_work(tmp_path, capsys):
    out = tmp_path / "select"
    assert select_tool.main(["--output-dir", str(out), "DATASETS.ROOT", str(tmp_path / "data"),
                             "DATASETS.SYNTH_SEED", "0"]) == 2
    assert "SYNTH_SEED=0 is the reporting draw" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "data").exists()


def test_tool_scores_match_the_cluster_methods_first_round(tmp_path):
    out = tmp_path / "select"
    argv = ["--k1", "6", "--eps", "0.4,0.6", "--adapt-top", "1", "--output-dir", str(out),
            *tiny_stage1(tmp_path / "data", tmp_path / "source_models"),
            "ADAPT.SOLVER.IMS_PER_BATCH", "8", "ADAPT.SOLVER.MAX_EPOCH", "1",
            "ADAPT.SOLVER.ITERS_PER_EPOCH", "1", "ADAPT.SOLVER.STEPS", "[1]",
            "ADAPT.PSEUDO_LABEL.NUM_INSTANCES", "2", "ADAPT.CLUSTER.K2", "2",
            "ADAPT.CLUSTER.MIN_SAMPLES", "2", "TEST.EVAL_PERIOD", "1"]
    assert select_tool.main(argv) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert report["synth_seed"] == 1
    assert Path(report["source_model"]).parent == tmp_path / "source_models"
    assert [(r["k1"], r["eps"]) for r in report["rows"]] == [(6, 0.4), (6, 0.6)]
    best = best_rows(report["rows"], "ari")[0]
    [adapted] = report["adapted"]
    assert (adapted["k1"], adapted["eps"]) == (best["k1"], best["eps"])
    run = json.loads((out / "adapt" / f"k1_6_eps_{best['eps']:.2f}" / "results.json").read_text())
    assert run["stages"][0]["cache"] == report["source_model"]
    # the pipeline's scores of the labels the method trained on in its first epoch
    first_round = run["stages"][1]["label_quality"][0]["granularities"][0]
    for key in ("ari", "nmi", "num_clusters", "num_outliers"):
        assert first_round[key] == pytest.approx(best[key], abs=1e-6)
    assert adapted["mAP"] == run["metrics"]["synth-duke"]["mAP"]
    assert "| 6 | 0.40 |" in (out / "sweep.md").read_text()
    # a rerun reads the finished adaptation back instead of training it again
    stamp = (out / "adapt" / f"k1_6_eps_{best['eps']:.2f}" / "results.json").stat().st_mtime_ns
    assert select_tool.main(argv) == 0
    assert json.loads((out / "sweep.json").read_text()) == report
    assert (out / "adapt" / f"k1_6_eps_{best['eps']:.2f}" / "results.json").stat(
        ).st_mtime_ns == stamp
