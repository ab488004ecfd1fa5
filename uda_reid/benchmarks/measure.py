"""Time and peak-memory measurement shared by the benchmarks."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Tuple

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int  # peak resident memory above the level before the call


def _rss() -> int:
    return psutil.Process().memory_info().rss


def measure(fn: Callable[[], Any], interval: float = 0.005) -> Tuple[Any, Measurement]:
    """Run ``fn()`` once; return its result and the wall time and peak RSS growth it caused.

    Peak RSS is sampled by a background thread every ``interval`` seconds, so short spikes
    between samples can be missed; allocations are large and long-lived in our benchmarks.
    """
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss())
    return result, Measurement(elapsed, peak[0] - base)


def format_row(name: str, ours: Measurement, reference: Measurement | None) -> str:
    """One printed line: time and memory of ours, and ratios against the reference."""
    line = f"{name:<28s} ours {ours.seconds:8.3f} s {ours.peak_bytes / 2**30:7.3f} GiB"
    if reference is not None:
        line += (
            f" | reference {reference.seconds:8.3f} s {reference.peak_bytes / 2**30:7.3f} GiB"
            f" | speed-up x{reference.seconds / max(ours.seconds, 1e-9):6.1f}"
            f" memory x{reference.peak_bytes / max(ours.peak_bytes, 1):6.1f}"
        )
    return line
