"""Time and peak-memory measurement shared by the benchmarks."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Tuple

import psutil
import torch
from threadpoolctl import threadpool_limits


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int  # peak resident memory above the level before the call
    cpu_seconds: float = 0.0  # process CPU time (all threads): steadier than wall on a busy machine


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
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = fn()
    finally:
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss())
    return result, Measurement(elapsed, peak[0] - base, cpu)


def best_of(fn: Callable[[], Any], repeat: int) -> Tuple[Any, Measurement]:
    """``measure(fn)`` ``repeat`` times; the last result and the fastest run's measurement."""
    runs = [measure(fn) for _ in range(max(1, repeat))]
    return runs[-1][0], min((m for _, m in runs), key=lambda m: m.seconds)


@contextmanager
def at_threads(num: int) -> Iterator[None]:
    """Run torch, BLAS and OpenMP (faiss) on ``num`` threads inside the block; prints the
    thread count and the current 1-minute load average first."""
    print(f"[{num} thread{'s' if num > 1 else ''}, load average {os.getloadavg()[0]:.1f}]")
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        with threadpool_limits(limits=num):
            yield
    finally:
        torch.set_num_threads(before)


def format_floor(name: str, ours: Measurement, floor: Measurement, floor_name: str) -> str:
    """One printed line: ours as a multiple of the k-NN search it cannot avoid."""
    return (f"{name:<28s} ours {ours.seconds:7.3f} s (CPU {ours.cpu_seconds:7.3f} s) "
            f"{ours.peak_bytes / 2**30:6.3f} GiB | {floor_name} {floor.seconds:7.3f} s "
            f"(CPU {floor.cpu_seconds:7.3f} s) {floor.peak_bytes / 2**30:6.3f} GiB"
            f" | ours = x{ours.seconds / max(floor.seconds, 1e-9):5.2f} of it "
            f"(CPU x{ours.cpu_seconds / max(floor.cpu_seconds, 1e-9):5.2f})")


def memory_ratio(reference_bytes: int, ours_bytes: int, floor: int = 2**20) -> str:
    """``x<ratio>`` of two peak allocations, or ``-`` when ours stays under ``floor`` bytes (a
    ratio against a near-zero peak says nothing)."""
    if ours_bytes < floor:
        return "-"
    return f"x{reference_bytes / ours_bytes:6.1f}"


def format_row(name: str, ours: Measurement, reference: Measurement | None) -> str:
    """One printed line: time and memory of ours, and ratios against the reference."""
    line = f"{name:<28s} ours {ours.seconds:8.3f} s {ours.peak_bytes / 2**30:7.3f} GiB"
    if reference is not None:
        line += (
            f" | reference {reference.seconds:8.3f} s {reference.peak_bytes / 2**30:7.3f} GiB"
            f" | speed-up x{reference.seconds / max(ours.seconds, 1e-9):6.1f}"
            f" (CPU x{reference.cpu_seconds / max(ours.cpu_seconds, 1e-9):6.1f})"
            f" memory {memory_ratio(reference.peak_bytes, ours.peak_bytes)}"
        )
    return line
