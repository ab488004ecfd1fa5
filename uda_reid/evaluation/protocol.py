"""The Market-1501 pair structure shared by the rank and ROC metrics, processed in row chunks.

For query ``i``, gallery entries with the query's id *and* camera are *removed*; the other
entries with its id are *positives* (genuine pairs); every entry with another id, distractors
(id 0) included, is a *negative* (impostor pair).

Nothing of size (Q, G) is built beyond one chunk of rows per worker thread: the same-id
entries are found from the gallery grouped by id (sparse), and a chunk is a copy of its
distance rows with the same-id entries set to ``+inf`` and each row sorted, so the number of
negatives below any value is a binary search. numpy's sort releases the GIL, so chunks are
sorted in parallel threads.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Tuple, TypeVar, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
T = TypeVar("T")

CHUNK_ELEMENTS = 1 << 22  # distance entries per chunk (16 MiB of float32)


def to_numpy(x: ArrayLike) -> np.ndarray:
    """A numpy view (CPU tensors, arrays) or copy (GPU tensors) of ``x``."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def default_threads() -> int:
    """Worker threads for chunked evaluation: the machine's cores, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


class PairIndex:
    """Checked inputs of one evaluation, with the gallery grouped by id.

    ``dist`` (Q, G) in a floating dtype (float32 kept, integers and float16 widened);
    ``q_pids``/``q_camids`` (Q,), ``g_pids``/``g_camids`` (G,).
    """

    def __init__(self, distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
                 q_camids: ArrayLike, g_camids: ArrayLike) -> None:
        dist = to_numpy(distmat)
        if dist.ndim != 2:
            raise ValueError(f"distmat must be (num_query, num_gallery), got shape {dist.shape}")
        if not np.issubdtype(dist.dtype, np.floating) or dist.dtype.itemsize < 4:
            dist = dist.astype(np.result_type(dist.dtype, np.float32))
        self.dist = dist
        self.num_query, self.num_gallery = dist.shape
        if not (self.num_query and self.num_gallery):
            raise ValueError(f"distmat is empty: shape {dist.shape}")
        arrays = {}
        for name, arr, n in (("q_pids", q_pids, self.num_query),
                             ("q_camids", q_camids, self.num_query),
                             ("g_pids", g_pids, self.num_gallery),
                             ("g_camids", g_camids, self.num_gallery)):
            a = to_numpy(arr)
            if a.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match distmat "
                                 f"{dist.shape}, got {a.shape}")
            arrays[name] = a
        self.q_pids, self.q_camids = arrays["q_pids"], arrays["q_camids"]
        self.g_pids, self.g_camids = arrays["g_pids"], arrays["g_camids"]
        # gallery indices grouped by id, ascending index within a group
        self.g_order = np.argsort(self.g_pids, kind="stable")
        ids, starts, counts = np.unique(self.g_pids[self.g_order], return_index=True,
                                        return_counts=True)
        slot = np.minimum(np.searchsorted(ids, self.q_pids), len(ids) - 1)
        found = ids[slot] == self.q_pids
        self.group_start = np.where(found, starts[slot], 0)
        self.group_size = np.where(found, counts[slot], 0)
        self.num_negatives = self.num_gallery - self.group_size  # (Q,)

    def same_id(self, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
        """Same-id entries of queries ``start:stop``: (row - start, gallery index) int arrays,
        sorted by row then gallery index."""
        sizes = self.group_size[start:stop]
        rows = np.repeat(np.arange(stop - start), sizes)
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        cols = self.g_order[np.repeat(self.group_start[start:stop], sizes) + offsets]
        return rows, cols

    def positives(self, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positives of queries ``start:stop``: (row - start, gallery index, distance)."""
        rows, cols = self.same_id(start, stop)
        keep = self.g_camids[cols] != self.q_camids[start + rows]
        rows, cols = rows[keep], cols[keep]
        values = self.dist[start + rows, cols]
        if np.isnan(values).any():
            raise ValueError(f"distmat has NaN entries in query rows {start}..{stop - 1}")
        return rows, cols, values

    def sorted_negatives(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, G): rows ``start:stop`` with same-id entries set to ``+inf``, each row
        sorted, so row ``r`` begins with its ``num_negatives`` negative distances ascending."""
        d = np.array(self.dist[start:stop], dtype=self.dist.dtype)
        d[self.same_id(start, stop)] = np.inf
        d.sort(axis=1)
        if np.isnan(d[:, -1]).any():  # NaN sorts last
            raise ValueError(f"distmat has NaN entries in query rows {start}..{stop - 1}")
        return d

    def chunk_rows(self) -> int:
        """Query rows per chunk."""
        return max(1, CHUNK_ELEMENTS // max(self.num_gallery, 1))


def searchsorted_rows(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray
                      ) -> np.ndarray:
    """``np.searchsorted(sorted_rows[rows[p]], values[p], "left")`` (the number of entries
    ``< values[p]``) for every ``p``, vectorised by binary lifting over all ``p`` at once.
    sorted_rows (R, G); rows, values (P,) -> (P,) int64."""
    n = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    base = rows.astype(np.int64) * n - 1
    count = np.zeros(len(rows), dtype=np.int64)
    step = 1 << (max(n, 1).bit_length() - 1)
    while step:
        cand = count + step
        count += step * ((cand <= n) & (flat[base + np.minimum(cand, n)] < values))
        step >>= 1
    return count


def map_chunks(fn: Callable[[int, int], T], num_rows: int, chunk: int,
               threads: Optional[int] = None) -> Iterator[T]:
    """``fn(start, stop)`` over consecutive row chunks, results in order; with ``threads`` > 1
    at most ``threads + 1`` chunks are in flight (bounded memory)."""
    bounds = [(s, min(s + chunk, num_rows)) for s in range(0, num_rows, chunk)]
    threads = default_threads() if threads is None else threads
    if threads <= 1 or len(bounds) <= 1:
        yield from (fn(s, e) for s, e in bounds)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for s, e in bounds:
            pending.append(pool.submit(fn, s, e))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
