"""evaluate_rank (and, with --roc, evaluate_roc) vs straightforward references of the same
definitions, on synthetic distance matrices of Market-1501 or MSMT17 size."""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable, Dict, Tuple

import numpy as np

from uda_reid.benchmarks import BENCHMARKS
from uda_reid.benchmarks.measure import Measurement, format_row, measure
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.roc import evaluate_roc

SIZES = {"market": (3368, 15913, 751, 6), "msmt": (11659, 82161, 3060, 15)}
PRIME = {"market": 15919, "msmt": 82163}  # > gallery size, < 2**23: exact in float32

Problem = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def synthetic_problem(size: str, ties: bool = False, seed: int = 0) -> Problem:
    """Random ids (0: distractors) and cameras, and (Q, G) float32 distances where same-id
    pairs are closer on average.

    Default: tie-free by construction: row ``i`` holds ``2 * ((j * a_i + b_i) mod p)`` (a
    permutation of even integers, ``p`` prime) and same-id entries are shifted to odd values.
    ``ties``: uniform float32 distances, which tie as often as real float32 distances do.
    """
    num_q, num_g, ids, cams = SIZES[size]
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(1, ids, num_q), rng.integers(0, ids, num_g)
    q_cams, g_cams = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    p = PRIME[size]
    a, b = rng.integers(1, p, num_q), rng.integers(0, p, num_q)
    distmat = np.empty((num_q, num_g), dtype=np.float32)
    cols = np.arange(num_g, dtype=np.int64)
    for s in range(0, num_q, 512):
        rows = slice(s, min(s + 512, num_q))
        same = q_pids[rows, None] == g_pids[None, :]
        if ties:
            block = rng.random((same.shape[0], num_g), dtype=np.float32) - 0.4 * same
        else:
            block = 2 * ((cols * a[rows, None] + b[rows, None]) % p) - p * same  # odd: no ties
        distmat[rows] = block
    return distmat, q_pids, g_pids, q_cams, g_cams


def reference_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                   q_cams: np.ndarray, g_cams: np.ndarray, max_rank: int = 50,
                   kind: str = "quicksort") -> Dict[str, Any]:
    """The textbook evaluation (torchreid's eval_market1501): argsort every row, drop the
    query's id in its camera, walk the list."""
    indices = np.argsort(distmat, axis=1, kind=kind)
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
        cmc = (cum >= 1).astype(np.float64)[:max_rank]
        cmcs.append(cmc)
        aps.append(((cum / (np.arange(len(hits)) + 1.0)) * hits).sum() / hits.sum())
    return {"cmc": np.mean(cmcs, 0), "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}


def reference_roc(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                  q_cams: np.ndarray, g_cams: np.ndarray,
                  fprs: Tuple[float, ...] = (1e-4, 1e-3, 1e-2)) -> Dict[float, float]:
    """All kept pair distances gathered and sorted; TPR at the largest threshold with
    FPR <= f."""
    same = q_pids[:, None] == g_pids[None, :]
    genuine = np.sort(distmat[same & (q_cams[:, None] != g_cams[None, :])])
    impostor = np.sort(distmat[~same])
    out = {}
    for f in fprs:
        k = int(np.floor(f * impostor.size))
        t = impostor[k] if k < impostor.size else np.inf
        out[f] = np.searchsorted(genuine, t, "left") / genuine.size
    return out


def timed(fn: Callable[[], Any]) -> Tuple[Any, Measurement, float]:
    """Result, wall time and peak RSS growth (measure), and process CPU seconds."""
    cpu = time.process_time()
    result, m = measure(fn)
    return result, m, time.process_time() - cpu


def scaled(m: Measurement, factor: float) -> Measurement:
    return Measurement(m.seconds * factor, int(m.peak_bytes * factor), m.cpu_seconds * factor)


@BENCHMARKS.register("eval")
class EvalBenchmark:
    """Rank evaluation (CMC/mAP/mINP; ROC with --roc) at Market-1501 or MSMT17 size."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="market")
        parser.add_argument("--reference-queries", type=int, default=0, metavar="N",
                            help="run the references on the first N queries only and scale "
                                 "their time and memory by Q / N (0: all queries)")
        parser.add_argument("--ties", action="store_true",
                            help="float32 uniform distances with natural ties (the rank "
                                 "reference then uses a stable argsort, our tie rule)")
        parser.add_argument("--roc", action="store_true", help="also time evaluate_roc")
        parser.add_argument("--threads", type=int, default=None,
                            help="worker threads of ours (default: cores, at most 8)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        problem = synthetic_problem(args.size, args.ties)
        num_q, num_g = problem[0].shape
        print(f"eval --size {args.size}{' --ties' if args.ties else ''}: {num_q} queries x "
              f"{num_g} gallery ({problem[0].nbytes / 2**30:.2f} GiB float32 input); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        n = min(args.reference_queries or num_q, num_q)
        sub = (problem[0][:n], problem[1][:n], problem[2], problem[3][:n], problem[4])
        note = (f" (reference on the first {n} queries, time and memory x{num_q / n:.2f})"
                if n < num_q else "")
        ok = True

        ours, m_ours, cpu = timed(lambda: evaluate_rank(*problem, threads=args.threads))
        kind = "stable" if args.ties else "quicksort"
        ref, m_ref, _ = timed(lambda: reference_rank(*sub, kind=kind))
        check = ours if n == num_q else evaluate_rank(*sub, threads=args.threads)
        diff = max(abs(check["mAP"] - ref["mAP"]), abs(check["mINP"] - ref["mINP"]),
                   float(np.abs(check["cmc"] - ref["cmc"]).max()))
        print(format_row("evaluate_rank", m_ours, scaled(m_ref, num_q / n)) + note)
        print(f"  ours: process CPU {cpu:.2f} s; mAP {ours['mAP']:.6f} mINP {ours['mINP']:.6f} "
              f"rank-1 {ours['cmc'][0]:.6f}, {ours['num_valid_queries']} valid queries; "
              f"max |ours - reference| {diff:.1e} on the compared queries")
        ok &= diff < 1e-9

        if args.roc:
            ours_roc, m_roc, cpu = timed(lambda: evaluate_roc(*problem, threads=args.threads))
            ref_roc, m_ref_roc, _ = timed(lambda: reference_roc(*sub))
            check_roc = (ours_roc if n == num_q
                         else evaluate_roc(*sub, threads=args.threads))["tpr_at_fpr"]
            diff = max(abs(check_roc[f] - ref_roc[f]) for f in ref_roc)
            print(format_row("evaluate_roc", m_roc, scaled(m_ref_roc, num_q / n)) + note)
            tprs = ", ".join(f"{f:.0e}: {t:.6f}" for f, t in ours_roc["tpr_at_fpr"].items())
            print(f"  ours: process CPU {cpu:.2f} s; TPR@FPR {tprs}; "
                  f"max |ours - reference| {diff:.1e} on the compared queries")
            ok &= diff < 1e-12
        return 0 if ok else 1
