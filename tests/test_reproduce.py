"""Reproduce tables: resumable cells, failure recording, aggregation, references, outputs."""
import json

import pytest

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
