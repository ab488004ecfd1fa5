"""Benchmark printing: memory ratios only against a peak that means something."""
from uda_reid.benchmarks.measure import memory_ratio


def test_memory_ratio_is_a_dash_when_ours_stays_under_a_mebibyte():
    assert memory_ratio(2**30, 0) == "-"
    assert memory_ratio(2**30, 2**20 - 1) == "-"
    assert memory_ratio(2**30, 2**28) == "x   4.0"
