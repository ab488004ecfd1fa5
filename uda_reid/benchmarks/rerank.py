"""k-reciprocal re-ranking: ours (features in; dense distances in) vs a dense numpy reference."""
from __future__ import annotations

import argparse
import os
from typing import List, Optional, Tuple

import numpy as np

from uda_reid.benchmarks import BENCHMARKS
from uda_reid.benchmarks.blobs import machine_note, sphere_blobs
from uda_reid.benchmarks.measure import (
    FloorRow,
    at_threads,
    best_of_each,
    format_floor,
    format_row,
    format_summary,
    measure,
)
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.rerank import dense_neighbours, re_ranking, re_ranking_features
from uda_reid.utils.knn import self_knn

FLOOR_TARGET = 2.0  # re-ranking within 2x its k-NN search
SIZES = {  # queries, gallery, identities
    "1k": (1000, 5000, 450), "market": (3368, 15913, 1501), "msmt": (11659, 82161, 4101),
}


def dense_reference(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int,
                    lam: float) -> np.ndarray:
    """The straightforward numpy re-ranking (as FastReID / torchreid ship it): dense (N, N)
    original distance, full argsort, dense encoding matrix, inverted-index Jaccard."""
    nq, n = q_g.shape[0], q_g.shape[0] + q_g.shape[1]
    dist = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    dist = np.square(dist).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))
    rank = np.argsort(dist).astype(np.int32)
    enc = np.zeros_like(dist)
    half = int(np.around(k1 / 2.0))

    def recip(i: int, k: int) -> np.ndarray:
        fwd = rank[i, :k + 1]
        return fwd[np.where(rank[fwd, :k + 1] == i)[0]]

    for i in range(n):
        r = recip(i, k1)
        expansion = r
        for c in r:
            rc = recip(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3.0 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        enc[i, expansion] = w / w.sum()
    dist = dist[:nq]
    if k2 != 1:
        qe = np.zeros_like(enc)
        for i in range(n):
            qe[i] = enc[rank[i, :k2]].mean(axis=0)
        enc = qe
    del rank
    inv = [np.where(enc[:, j] != 0)[0] for j in range(n)]
    jac = np.zeros_like(dist)
    for i in range(nq):
        acc = np.zeros(n, np.float32)
        for j in np.where(enc[i] != 0)[0]:
            acc[inv[j]] += np.minimum(enc[i, j], enc[inv[j], j])
        jac[i] = 1.0 - acc / (2.0 - acc)
    return (jac * (1 - lam) + dist * lam)[:, nq:]


def mean_ap(dist: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray) -> float:
    """Market-1501 mAP with queries and gallery on different cameras (nothing removed)."""
    ranks = evaluate_rank(dist, q_ids, g_ids, np.zeros(len(q_ids)), np.ones(len(g_ids)))
    return float(ranks["mAP"])


def time_rows(qf: np.ndarray, gf: np.ndarray, args: argparse.Namespace, threads: int
              ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], List[FloorRow]]:
    """Print both entry points, the k-NN searches they contain (timed in turns with them) and
    (unless skipped) the reference at the current thread count; return ours (features in,
    dense in), the reference (None when skipped or at msmt size) and the summary rows."""
    params = dict(k1=args.k1, k2=args.k2, lambda_value=args.lambda_value)
    nq, n = len(qf), len(qf) + len(gf)
    x = np.concatenate([qf, gf])
    k = max(args.k1 + 1, args.k2)
    load = os.getloadavg()[0]
    results, m = best_of_each({
        "features": lambda: re_ranking_features(qf, gf, **params),
        "search": lambda: self_knn(x, k, "l2", farthest=True, keep=(slice(0, nq), slice(nq, n))),
    }, args.repeat)
    feat = results["features"]
    print(format_floor("re_ranking_features", m["features"], m["search"], "its self_knn"))
    rows = [FloorRow("re_ranking_features", threads, load, m["features"], m["search"],
                     FLOOR_TARGET)]
    if args.size == "msmt":
        return feat, None, None, rows
    blocks = [np.sqrt(np.maximum(2 - 2 * a @ b.T, 0)) for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    load = os.getloadavg()[0]
    results, m_in = best_of_each({
        "dense": lambda: re_ranking(*blocks, **params),
        "ranks": lambda: dense_neighbours(*blocks, k),
    }, args.repeat)
    dense = results["dense"]
    print(format_floor("re_ranking (dense in)", m_in["dense"], m_in["ranks"], "its top-k"))
    rows.insert(0, FloorRow("re_ranking (dense in)", threads, load, m_in["dense"],
                            m_in["ranks"], FLOOR_TARGET))
    if args.no_reference:
        return feat, dense, None, rows
    reference, m_ref = measure(lambda: dense_reference(*blocks, args.k1, args.k2,
                                                        args.lambda_value))
    print(format_row("re_ranking (dense in)", m_in["dense"], m_ref))
    print(format_row("re_ranking_features", m["features"], m_ref))
    for row in rows:
        row.reference = m_ref
    return feat, dense, reference, rows


@BENCHMARKS.register("rerank")
class RerankBenchmark:
    """k-reciprocal re-ranking on synthetic 2048-d features (1k: 1,000 x 5,000; Market-1501 or
    MSMT17 size)."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="1k")
        parser.add_argument("--dim", type=int, default=2048)
        parser.add_argument("--k1", type=int, default=20)
        parser.add_argument("--k2", type=int, default=6)
        parser.add_argument("--lambda-value", type=float, default=0.3)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, nargs="+", default=[1],
                            help="thread counts to time at, one after the other in this process")
        parser.add_argument("--repeat", type=int, default=1,
                            help="time ours and the k-NN searches this often, in turns; keep "
                                 "each one's fastest run")
        parser.add_argument("--no-reference", action="store_true",
                            help="skip the dense numpy reference (about 2 min at market size)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        nq, ng, num_ids = SIZES[args.size]
        feats, ids = sphere_blobs(nq + ng, args.dim, num_ids, seed=args.seed)
        qf, gf = feats[:nq], feats[nq:]
        print(f"rerank --size {args.size}: {nq} queries x {ng} gallery, {args.dim}-d, "
              f"k1={args.k1} k2={args.k2}, {machine_note()}")
        if args.size == "msmt":
            print("dense re_ranking / reference / mAP: not run at msmt size (the (N, N) float32 "
                  "original distance alone is 35 GB)")
        summary = []
        for num in args.threads:
            with at_threads(num):
                ours, dense, reference, rows = time_rows(qf, gf, args, num)
            summary += rows
        if dense is None:
            print(format_summary(summary))
            return 0
        q_ids, g_ids = ids[:nq], ids[nq:]
        print(f"  mAP plain {mean_ap(2 - 2 * qf @ gf.T, q_ids, g_ids):.4f}  "
              f"re-ranked {mean_ap(ours, q_ids, g_ids):.4f}")
        diff = np.abs(ours - dense)
        print(f"  features vs dense: max |diff| {diff.max():.2e}, entries > 1e-5: "
              f"{(diff > 1e-5).mean():.2e} (float32 near-ties at the k1 / half-set boundaries), "
              f"mAP {mean_ap(ours, q_ids, g_ids):.4f} vs {mean_ap(dense, q_ids, g_ids):.4f}")
        if reference is not None:
            diff = np.abs(dense - reference)
            print(f"  max |dense - reference| {diff.max():.2e}, entries > 1e-5: "
                  f"{(diff > 1e-5).mean():.2e} (order of exactly tied distances), "
                  f"mAP reference {mean_ap(reference, q_ids, g_ids):.4f} "
                  f"ours {mean_ap(dense, q_ids, g_ids):.4f}")
        print(format_summary(summary))
        return 0
