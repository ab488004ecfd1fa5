"""Benchmark measuring and printing: turns, floor ratios against targets, memory ratios."""
import time

from uda_reid.benchmarks.measure import (
    FloorRow,
    Measurement,
    best_of_each,
    format_summary,
    measure,
    memory_ratio,
)


def test_memory_ratio_is_a_dash_when_ours_stays_under_a_mebibyte():
    assert memory_ratio(2**30, 0) == "-"
    assert memory_ratio(2**30, 2**20 - 1) == "-"
    assert memory_ratio(2**30, 2**28) == "x   4.0"


def test_best_of_each_takes_turns_and_returns_the_last_results():
    calls = []

    def record(name):
        def fn():
            calls.append(name)
            return calls.count(name)
        return fn

    results, best = best_of_each({"ours": record("ours"), "search": record("search")}, 3)
    assert calls == ["ours", "search"] * 3
    assert results == {"ours": 3, "search": 3}
    assert set(best) == {"ours", "search"} and all(m.seconds >= 0 for m in best.values())


def test_summary_flags_each_floor_ratio_against_its_target():
    search = Measurement(2.0, 0, 2.0)
    rows = [FloorRow("jaccard distance", 1, 0.5, Measurement(2.9, 2**30, 2.8), search, 1.5),
            FloorRow("jaccard distance", 2, 0.5, Measurement(3.1, 2**30, 3.0), search, 1.5,
                     reference=Measurement(31.0, 0, 30.0))]
    lines = format_summary(rows).splitlines()
    assert "x1.45 (1.40) <= 1.5 met" in lines[2] and "reference" not in lines[2]
    assert "x1.55 (1.50) <= 1.5 MISSED" in lines[3]
    assert lines[3].rstrip().endswith("x10.0 (CPU x10.0)")


def test_cpu_time_leaves_out_the_memory_sampler():
    # a sampler polling every 0.5 ms burns a large share of a core while fn sleeps
    _, m = measure(lambda: time.sleep(0.3), interval=0.0005)
    assert m.seconds >= 0.3
    assert m.cpu_seconds < 0.03
