"""Time and peak-memory measurement shared by the benchmarks."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

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
    The CPU time is the process's without that thread's own (which grows with the wall time,
    so on a loaded machine it would add more to the slower of two functions).
    """
    base = _rss()
    peak = [base]
    sampler_cpu = [0.0]
    done = threading.Event()

    def sample() -> None:
        own_start = time.thread_time()
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(interval)
        sampler_cpu[0] = time.thread_time() - own_start

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        thread.join()
        cpu = time.process_time() - cpu_start - sampler_cpu[0]
    peak[0] = max(peak[0], _rss())
    return result, Measurement(elapsed, peak[0] - base, cpu)


def best_of_each(fns: Dict[str, Callable[[], Any]], repeat: int
                 ) -> Tuple[Dict[str, Any], Dict[str, Measurement]]:
    """``measure`` each function in turn, ``repeat`` rounds; each one's last result and its
    fastest run (the CPU time is the smallest over the rounds too: on a shared machine a round
    can be slowed for one function and not the other, so taking turns keeps them comparable)."""
    results: Dict[str, Any] = {}
    runs: Dict[str, List[Measurement]] = {name: [] for name in fns}
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            results[name], m = measure(fn)
            runs[name].append(m)
    best = {}
    for name, ms in runs.items():
        fastest = min(ms, key=lambda m: m.seconds)
        best[name] = Measurement(fastest.seconds, fastest.peak_bytes,
                                 min(m.cpu_seconds for m in ms))
    return results, best


@dataclass
class FloorRow:
    """One workload at one thread count: ours, the k-NN search it cannot avoid, and (when
    run) the reference implementation."""

    name: str
    threads: int
    load: float  # 1-minute load average when the row was measured
    ours: Measurement
    floor: Measurement
    floor_target: float  # ours / search must stay at or below this
    reference: Optional[Measurement] = None

    def ratio(self) -> Tuple[float, float]:
        """ours / search in wall-clock and in CPU time."""
        return (self.ours.seconds / max(self.floor.seconds, 1e-9),
                self.ours.cpu_seconds / max(self.floor.cpu_seconds, 1e-9))


def format_summary(rows: List[FloorRow]) -> str:
    """A table of ours / search against its target, and of the speed-up on the reference."""
    lines = ["summary (wall s, CPU s in brackets; ours / search met or MISSED at its target):",
             f"  {'workload':<24s} {'threads':>7s} {'load':>5s} {'ours':>16s} "
             f"{'k-NN search':>16s} {'ours / search, target':>23s} {'peak GiB':>8s}  "
             "speed-up on the reference"]
    for r in rows:
        wall, cpu = r.ratio()
        floor = (f"x{wall:.2f} ({cpu:.2f}) <= {r.floor_target:.1f} "
                 + ("met" if wall <= r.floor_target else "MISSED"))
        line = (f"  {r.name:<24s} {r.threads:>7d} {r.load:>5.1f} "
                f"{r.ours.seconds:>7.3f} ({r.ours.cpu_seconds:>6.3f}) "
                f"{r.floor.seconds:>7.3f} ({r.floor.cpu_seconds:>6.3f}) "
                f"{floor:>23s} {r.ours.peak_bytes / 2**30:>8.3f}")
        if r.reference is not None:
            line += (f"  x{r.reference.seconds / max(r.ours.seconds, 1e-9):.1f} "
                     f"(CPU x{r.reference.cpu_seconds / max(r.ours.cpu_seconds, 1e-9):.1f})")
        lines.append(line)
    return "\n".join(lines)


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
