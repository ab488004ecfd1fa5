"""Reproduce tables: resumable cells, failure recording, aggregation, references, outputs."""
import json

import pytest

from tool_loading import load_tool
from uda_reid.reproduce.references import load_references
from uda_reid.reproduce.table import (aggregate, build_rows, cell_state, estimate_seconds,
                                      plan_cells, run_cells, table_markdown, write_outputs)


def results(target, **metrics):
    return {"task": "adapt", "metrics": {target: metrics}, "wall_seconds": 100.0}


def fake_runner(calls, fail_methods=()):
    def run(cell, folder):
        calls.append(cell)
        if cell.method in fail_methods:
            raise RuntimeError("out of memory (simulated)")
        folder.mkdir(parents=True, exist_ok=True)
        value = 0.5 + 0.1 * cell.seed
        (folder / "results.json").write_text(json.dumps(results(
            cell.target, mAP=value, rank1=value + 0.2, rank5=0.9, rank10=0.95, mINP=0.1)))
    return run


def test_default_table_looks_for_the_registered_folders_of_the_uda_datasets(tmp_path):
    tool = load_tool("reproduce")
    assert tool.real_dataset_dirs() == ["DukeMTMC-reID", "MSMT17_V1", "Market-1501-v15.09.15"]
    assert tool.default_table(["DATASETS.ROOT", str(tmp_path)]) == "synthetic"
    (tmp_path / "MSMT17_V1").mkdir()
    assert tool.default_table(["DATASETS.ROOT", str(tmp_path)]) == "uda"


def test_finished_cells_are_skipped_on_rerun(tmp_path):
    cells = plan_cells([("market1501", "dukemtmc")], ["direct", "ecn"], seeds=2)
    calls = []
    run_cells(cells[:2], tmp_path, fake_runner(calls))
    assert [cell_state(c, tmp_path) for c in cells] == ["done", "done", "todo", "todo"]
    calls.clear()
    states = run_cells(cells, tmp_path, fake_runner(calls))
    assert calls == cells[2:] and set(states.values()) == {"done"}


def test_a_failing_cell_is_recorded_and_the_rest_runs_then_retried(tmp_path):
    cells = plan_cells([("market1501", "dukemtmc")], ["ecn", "direct"], seeds=1)
    calls = []
    states = run_cells(cells, tmp_path, fake_runner(calls, fail_methods=("ecn",)))
    assert states == {cells[0]: "failed", cells[1]: "done"}
    failed = json.loads((cells[0].folder(tmp_path) / "failed.json").read_text())
    assert "out of memory" in failed["error"] and "RuntimeError" in failed["traceback"]
    calls.clear()
    run_cells(cells, tmp_path, fake_runner(calls))
    assert calls == [cells[0]] and cell_state(cells[0], tmp_path) == "done"
    assert not (cells[0].folder(tmp_path) / "failed.json").exists()


def test_mean_and_std_over_seeds_by_hand():
    runs = [results("t", mAP=0.50, rank1=0.70), results("t", mAP=0.60, rank1=0.80),
            results("t", mAP=0.70, rank1=0.90)]
    agg = aggregate(runs, "t")
    assert agg["mAP"][0] == pytest.approx(60.0)
    assert agg["mAP"][1] == pytest.approx((200 / 3) ** 0.5)  # population std of 50, 60, 70
    assert agg["rank1"] == pytest.approx((80.0, (200 / 3) ** 0.5, 3))
    assert "rank5" not in agg


def test_reference_file_parses_and_every_entry_names_its_source(tmp_path):
    refs = load_references()
    assert len(refs) >= 10 and all(r.ref and r.metrics for r in refs)
    ecn = [r for r in refs if r.ours == "ecn" and r.target == "dukemtmc"]
    assert ecn and ecn[0].metrics["mAP"] == 40.4
    bad = tmp_path / "refs.yml"
    bad.write_text("- {method: X, source: market, target: duke, mAP: 1.0}\n")
    with pytest.raises(ValueError, match="entry 1: missing 'ref'"):
        load_references(bad)
    bad.write_text("- {method: X, source: market, target: duke, mAP: 1.0, ref: a paper}\n")
    with pytest.raises(ValueError, match="entry 1: ref 'a paper' must start with"):
        load_references(bad)
    bad.write_text("- {method: X, source: market, target: duke, mAP: 1.0, "
                   "ref: 'arXiv:1904.01990 Section 4'}\n")
    with pytest.raises(ValueError, match="entry 1: ref 'arXiv:1904.01990 Section 4' must"):
        load_references(bad)


# The cited values, source by source (repository + file, or paper + table): (method, source,
# target) -> (mAP or None, rank-1) in percent, as the cited source shows them
# (/work/shared/REFERENCES.md gathers them).
FASTREID = "JDAI-CV/fast-reid projects/CrossDomainReID/README.md"
CITED = {
    "arXiv:1904.01990 Table 2": {  # ECN's ablation, via a secondary summary
        ("ECN ablation: source only", "dukemtmc", "market1501"): (17.7, 43.1),
        ("ECN ablation: +E", "dukemtmc", "market1501"): (None, 48.7),
        ("ECN ablation: +E+C", "dukemtmc", "market1501"): (28.4, 63.1),
        ("ECN ablation: +E+N", "dukemtmc", "market1501"): (27.7, 58.0),
        ("ECN ablation: +E+C+N", "dukemtmc", "market1501"): (43.0, 75.1),
        ("ECN ablation: source only", "market1501", "dukemtmc"): (14.8, 28.9),
        ("ECN ablation: +E", "market1501", "dukemtmc"): (None, 34.2),
        ("ECN ablation: +E+C", "market1501", "dukemtmc"): (29.7, 53.9),
        ("ECN ablation: +E+N", "market1501", "dukemtmc"): (23.6, 39.7),
        ("ECN ablation: +E+C+N", "market1501", "dukemtmc"): (40.4, 63.3)},
    "zhunzhong07/ECN imgs/market_duke.png": {
        ("ECN", "dukemtmc", "market1501"): (43.0, 75.1),
        ("ECN", "market1501", "dukemtmc"): (40.4, 63.3)},
    "zhunzhong07/ECN imgs/msmt17.png": {
        ("ECN", "market1501", "msmt17"): (8.5, 25.3),
        ("ECN", "dukemtmc", "msmt17"): (10.2, 30.2)},
    "yxgeee/MMT figs/results.png": {
        ("MMT (paper)", "dukemtmc", "market1501"): (71.2, 87.7),
        ("MMT (paper)", "market1501", "dukemtmc"): (65.1, 78.0),
        ("MMT (paper)", "market1501", "msmt17"): (22.9, 49.2),
        ("MMT (paper)", "dukemtmc", "msmt17"): (23.3, 50.1)},
    "open-mmlab/OpenUnReID docs/MODEL_ZOO.md": {
        ("direct transfer", "dukemtmc", "market1501"): (27.2, 58.9),
        ("direct transfer", "market1501", "dukemtmc"): (28.1, 49.3),
        ("OpenUnReID strong baseline", "dukemtmc", "market1501"): (75.6, 90.9),
        ("OpenUnReID strong baseline", "market1501", "dukemtmc"): (60.4, 75.9),
        ("MMT", "dukemtmc", "market1501"): (80.9, 92.2),
        ("MMT", "market1501", "dukemtmc"): (67.7, 80.3),
        ("SpCL", "dukemtmc", "market1501"): (78.2, 90.5),
        ("SpCL", "market1501", "dukemtmc"): (70.4, 83.8)},
    "open-mmlab/OpenUnReID docs/LEADERBOARD.md": {
        ("SpCL (paper)", "dukemtmc", "market1501"): (76.7, 90.3),
        ("SpCL (paper)", "market1501", "dukemtmc"): (68.8, 82.9),
        ("SpCL (paper)", "market1501", "msmt17"): (26.8, 53.7),
        ("SpCL (paper)", "dukemtmc", "msmt17"): (26.5, 53.1)},
    "yxgeee/SpCL figs/results.png": {
        ("SpCL", "vehicleid", "veri776"): (38.9, 80.4)},
    FASTREID: {
        ("FastReID stronger baseline", "dukemtmc", "market1501"): (78.0, 91.0),
        ("FastReID stronger baseline", "market1501", "dukemtmc"): (66.7, 80.0),
        ("FastReID MLT", "dukemtmc", "market1501"): (81.5, 92.8),
        ("FastReID MLT", "market1501", "dukemtmc"): (71.2, 83.9),
        # the page's earlier version (its "Our method" rows to MSMT17)
        ("FastReID MLT", "market1501", "msmt17"): (26.5, 56.6),
        ("FastReID MLT", "dukemtmc", "msmt17"): (27.7, 59.5)},
}


def test_every_reference_entry_is_its_cited_number():
    from uda_reid.reproduce.references import citation

    refs = load_references()
    listed = set()
    for r in refs:
        source = citation(r.ref)
        assert source in CITED, f"{r.method} {r.source}->{r.target}: unknown source {r.ref!r}"
        key = (r.method, r.source, r.target)
        assert key in CITED[source], f"{source} does not list {key}"
        assert (r.metrics.get("mAP"), r.metrics["rank1"]) == CITED[source][key], key
        listed.add((source, key))
    assert listed == {(s, k) for s, rows in CITED.items() for k in rows}  # nothing left out
    # our mlt is compared with MLT itself, not with the stronger baseline
    mlt = {(r.source, r.target): r for r in refs if r.ours == "mlt"}
    assert (mlt[("dukemtmc", "market1501")].metrics["mAP"],
            mlt[("market1501", "dukemtmc")].metrics["mAP"]) == (81.5, 71.2)
    assert all(r.method == "FastReID MLT" for r in mlt.values()) and len(mlt) == 4


def test_table_outputs_with_paper_numbers_and_difference(tmp_path):
    cells = plan_cells([("market1501", "dukemtmc")], ["ecn", "mlt"], seeds=2)
    run_cells(cells, tmp_path, fake_runner([], fail_methods=("mlt",)))
    refs = load_references()
    rows = build_rows(cells, tmp_path, refs)
    md = table_markdown(rows, refs)
    ecn_line = next(line for line in md.splitlines() if "| ecn |" in line)
    assert "55.0 ± 5.0" in ecn_line and "40.4 / 63.3" in ecn_line and "+14.6" in ecn_line
    assert "| 0 (2 failed) |" in next(line for line in md.splitlines() if "| mlt |" in line)
    assert "SpCL" in md  # context rows for the pair
    paths = write_outputs(rows, refs, tmp_path)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    csv = paths["csv"].read_text().splitlines()
    assert csv[0].startswith("source,target,method") and "55.00,5.00" in csv[1]
    est = estimate_seconds(cells, tmp_path, default=600.0)
    assert est[cells[0]] == 100.0 and est[cells[2]] == 600.0


def test_every_cell_of_the_real_table_has_its_recipe():
    from uda_reid.adapt.pipeline import default_config_file
    from uda_reid.reproduce.runner import TABLES, recipe_of

    assert "cluster_contrast" in TABLES["uda"]["methods"]
    for pair in TABLES["uda"]["pairs"]:
        source, target = pair.split(":")
        for method in TABLES["uda"]["methods"]:
            recipe = default_config_file(source, target, recipe_of(method)[0])
            assert recipe is not None and recipe.stem == f"{source}2{target}", (pair, method)


def test_mlt_ablation_cells_add_one_piece_at_a_time(tmp_path):
    from uda_reid.adapt.pipeline import source_key
    from uda_reid.reproduce.runner import MLT_ABLATION, TABLES, cell_config
    from uda_reid.reproduce.table import Cell

    assert TABLES["synthetic_mlt_ablation"]["methods"] == list(MLT_ABLATION)
    pieces = []
    for name in MLT_ABLATION:
        cfg = cell_config(Cell("synth-market", "synth-duke", name, 1), tmp_path / name,
                          [], tmp_path / "cache")
        m = cfg.ADAPT.PSEUDO_LABEL
        pieces.append((cfg.ADAPT.METHOD, len(cfg.ADAPT.CLUSTER.EPS), m.TRANSPORT,
                       m.RECLUSTER_PERIOD, m.MIXTURE, m.DSBN, m.MEAN_TEACHER, source_key(cfg)))
    key = pieces[0][-1]
    assert [p[:-1] for p in pieces] == [
        ("cluster", 1, "none", 1, False, False, False),
        ("mlt", 3, "none", 1, False, False, False),
        ("mlt", 3, "epoch", 2, False, False, False),
        ("mlt", 3, "epoch", 2, True, False, False),
        ("mlt", 3, "epoch", 2, True, True, False),
        ("mlt", 3, "epoch", 2, True, True, True)]
    assert all(p[-1] == key for p in pieces)  # one source model for every cell
