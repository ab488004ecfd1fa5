"""evaluate_rank vs a straightforward per-query reference (torchreid-style argsort loop)."""
from __future__ import annotations

import argparse

import numpy as np

from uda_reid.benchmarks import BENCHMARKS
from uda_reid.benchmarks.measure import format_row, measure
from uda_reid.evaluation.rank import evaluate_rank

SIZES = {"market": (3368, 15913, 751, 6), "msmt": (11659, 82161, 3060, 15)}


def synthetic_problem(size: str, seed: int = 0):
    """Random ids/cameras and distances where same-id pairs are closer on average."""
    num_q, num_g, ids, cams = SIZES[size]
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(1, ids, num_q), rng.integers(0, ids, num_g)
    q_cams, g_cams = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    distmat = np.empty((num_q, num_g), dtype=np.float32)
    for s in range(0, num_q, 1024):
        block = rng.random((min(1024, num_q - s), num_g), dtype=np.float32)
        block -= 0.5 * (q_pids[s:s + 1024, None] == g_pids[None, :])
        distmat[s:s + 1024] = block
    return distmat, q_pids, g_pids, q_cams, g_cams


def reference_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank: int = 50):
    """The textbook evaluation: argsort every row, drop same-id same-camera, walk the list."""
    indices = np.argsort(distmat, axis=1)
    aps, inps, cmcs = [], [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = (g_pids[order][keep] == q_pids[i]).astype(np.int32)
        if not hits.any():
            continue
        cum = hits.cumsum()
        positions = np.flatnonzero(hits)
        inps.append(cum[positions[-1]] / (positions[-1] + 1.0))
        cmc = (cum >= 1).astype(np.float32)[:max_rank]
        cmcs.append(cmc)
        aps.append(((cum / (np.arange(len(hits)) + 1.0)) * hits).sum() / hits.sum())
    return {"cmc": np.mean(cmcs, 0), "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}


@BENCHMARKS.register("eval")
class EvalBenchmark:
    """Rank evaluation (CMC/mAP/mINP) at Market-1501 or MSMT17 size."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="market")
        parser.add_argument("--reference-queries", type=int, default=0,
                            help="time the reference on the first N queries only and "
                                 "extrapolate linearly (0: all)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        problem = synthetic_problem(args.size)
        num_q, num_g = problem[0].shape
        print(f"eval benchmark, {args.size} size: {num_q} queries x {num_g} gallery "
              f"({problem[0].nbytes / 2**30:.2f} GiB input)")
        ours, m_ours = measure(lambda: evaluate_rank(*problem))
        n = args.reference_queries or num_q
        sub = (problem[0][:n], problem[1][:n], problem[2], problem[3][:n], problem[4])
        ref, m_ref = measure(lambda: reference_rank(*sub))
        note = ""
        if n < num_q:
            m_ref.seconds *= num_q / n
            m_ref.peak_bytes = int(m_ref.peak_bytes * num_q / n)
            note = f" (reference timed on {n} queries, time and memory scaled x{num_q / n:.1f})"
        check = evaluate_rank(*sub) if n < num_q else ours
        diff = max(abs(check["mAP"] - ref["mAP"]), abs(check["mINP"] - ref["mINP"]),
                   float(np.abs(check["cmc"] - ref["cmc"]).max()))
        print(format_row("evaluate_rank", m_ours, m_ref) + note)
        print(f"mAP {ours['mAP']:.6f} mINP {ours['mINP']:.6f} rank-1 {ours['cmc'][0]:.6f}; "
              f"max |ours - reference| = {diff:.2e} on the compared queries")
        return 0 if diff < 1e-6 else 1
