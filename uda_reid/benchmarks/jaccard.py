"""k-reciprocal Jaccard distance and a pseudo-label round: ours (sparse) vs a dense reference."""
from __future__ import annotations

import argparse
import os
from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from uda_reid.adapt.clustering import build_backend, cluster
from uda_reid.adapt.label_quality import label_quality
from uda_reid.adapt.pseudo_labels import compute_jaccard_distance, multi_granularity_labels
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
from uda_reid.utils.knn import knn, self_knn

FLOOR_TARGET = 1.5  # the whole Jaccard distance within 1.5x its exact k-NN self-search
SIZES = {  # images, identities
    "6k": (6000, 350), "market-train": (12936, 751), "msmt-train": (32621, 1041),
}


def dense_reference(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """The straightforward dense version (as OpenUnReID / SpCL ship it): faiss k1-NN, dense
    (N, N) encoding, dense query expansion, inverted-index Jaccard into a dense (N, N)."""
    n = len(x)
    _, rank = knn(x, x, k1, "l2", backend="faiss")

    def recip(i: int, k: int) -> np.ndarray:
        fwd = rank[i, :k + 1]
        return fwd[np.where(rank[fwd, :k + 1] == i)[0]]

    half = int(np.around(k1 / 2))
    near = [recip(i, k1) for i in range(n)]
    near_half = [recip(i, half) for i in range(n)]
    enc = np.zeros((n, n), np.float32)
    for i in range(n):
        r = near[i]
        expansion = r
        for c in r:
            if len(np.intersect1d(near_half[c], r)) > 2 / 3 * len(near_half[c]):
                expansion = np.append(expansion, near_half[c])
        expansion = np.unique(expansion)
        d = 2.0 - 2.0 * x[expansion] @ x[i]
        w = np.exp(-(d - d.min()))
        enc[i, expansion] = w / w.sum()
    if k2 != 1:
        qe = np.zeros_like(enc)
        for i in range(n):
            qe[i] = enc[rank[i, :k2]].mean(axis=0)
        enc = qe
    inv = [np.where(enc[:, j] != 0)[0] for j in range(n)]
    jac = np.zeros((n, n), np.float32)
    for i in range(n):
        acc = np.zeros(n, np.float32)
        for j in np.where(enc[i] != 0)[0]:
            acc[inv[j]] += np.minimum(enc[i, j], enc[inv[j], j])
        jac[i] = 1.0 - acc / (2.0 - acc)
    return np.maximum(jac, 0.0)


def time_rows(x: np.ndarray, args: argparse.Namespace, threads: int
              ) -> Tuple[sp.csr_matrix, Optional[np.ndarray], FloorRow]:
    """Print ours, the k-NN searches it contains (timed in turns with ours) and (unless
    skipped) the reference at the current thread count; return ours, the reference (None when
    skipped) and the summary row."""
    xn = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    load = os.getloadavg()[0]
    results, m = best_of_each({
        "ours": lambda: compute_jaccard_distance(x, args.k1, args.k2, args.search),
        "self": lambda: self_knn(xn, args.k1, "l2", backend=args.search),
        "flat": lambda: knn(xn, xn, args.k1, "l2", backend="faiss"),
    }, args.repeat)
    ours = results["ours"]
    print(format_floor("jaccard distance", m["ours"], m["self"], f"self_knn {args.search}"))
    print(format_floor("", m["ours"], m["flat"], "faiss IndexFlatL2"))
    row = FloorRow("jaccard distance", threads, load, m["ours"], m["self"], FLOOR_TARGET)
    if args.no_reference:
        return ours, None, row
    reference, row.reference = measure(lambda: dense_reference(x, args.k1, args.k2))
    print(format_row("jaccard distance", m["ours"], row.reference))
    return ours, reference, row


@BENCHMARKS.register("jaccard")
class JaccardBenchmark:
    """Jaccard distance and a 3-granularity DBSCAN pseudo-label round on synthetic features."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default="6k")
        parser.add_argument("--dim", type=int, default=2048)
        parser.add_argument("--k1", type=int, default=30)
        parser.add_argument("--k2", type=int, default=6)
        parser.add_argument("--eps", type=float, nargs="+", default=[0.5, 0.6, 0.7])
        parser.add_argument("--noise", type=float, default=2.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--search", choices=["torch", "faiss"], default="torch",
                            help="k-NN backend inside the Jaccard distance (CPU default: torch)")
        parser.add_argument("--threads", type=int, nargs="+", default=[1],
                            help="thread counts to time at, one after the other in this process")
        parser.add_argument("--repeat", type=int, default=1,
                            help="time ours and the k-NN searches this often, in turns; keep "
                                 "each one's fastest run")
        parser.add_argument("--no-reference", action="store_true",
                            help="skip the dense reference (about 40 s per thread count at 6k)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        n, num_ids = SIZES[args.size]
        if args.size == "msmt-train" and not args.no_reference:
            print("dense reference: not run at msmt-train size (three dense (N, N) float32 "
                  "matrices, 12.8 GB, and Python loops over every row)")
            args.no_reference = True
        x, ids = sphere_blobs(n, args.dim, num_ids, noise=args.noise, seed=args.seed)
        print(f"jaccard --size {args.size}: {n} x {args.dim}, k1={args.k1} k2={args.k2}, "
              f"{machine_note()}")
        rows = []
        for num in args.threads:
            with at_threads(num):
                ours, reference, row = time_rows(x, args, num)
            rows.append(row)
        print(f"  sparse Jaccard: {ours.nnz} stored pairs ({ours.nnz / n:.1f} per row)")
        dbscan = build_backend("dbscan", min_samples=4)
        _, m_clu = measure(lambda: [cluster(dbscan, e, x, ours) for e in args.eps])
        rounds, m_round = measure(lambda: multi_granularity_labels(
            x, args.eps, dbscan, k1=args.k1, k2=args.k2, search_option=args.search))
        for eps, r in zip(args.eps, rounds):
            q = label_quality(r.labels, ids)
            print(f"  eps {eps}: {r.num_clusters} clusters, {r.num_outliers} outliers, "
                  f"NMI {q['nmi']:.3f} ARI {q['ari']:.3f} pairwise P/R "
                  f"{q['pairwise_precision']:.3f}/{q['pairwise_recall']:.3f}"
                  + (f"  [{r.degenerate}]" if r.degenerate else ""))
        print(format_row(f"dbscan x{len(args.eps)}", m_clu, None))
        print(format_row(f"round: jaccard + dbscan x{len(args.eps)}", m_round, None))
        if reference is not None:
            dense = np.ones((n, n), np.float32)
            coo = ours.tocoo()
            dense[coo.row, coo.col] = coo.data
            print(f"  max |sparse - dense reference| {np.abs(dense - reference).max():.2e}")
        print(format_summary(rows))
        return 0
