"""Rank-list grids and ROC plots as PNG files (written atomically; no pyplot, no global
matplotlib backend change)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from uda_reid.evaluation.protocol import ArrayLike, to_numpy
from uda_reid.utils.atomic import atomic_save

CELL = (64, 128)  # (width, height) of one resized image
BORDER = 4  # coloured frame around each image
CAPTION = 24  # two lines of text under each image
QUERY, MATCH, MISMATCH = (0, 0, 200), (0, 170, 0), (210, 0, 0)


def cell_size() -> Tuple[int, int]:
    """(width, height) of one grid cell: the framed image and its caption."""
    return CELL[0] + 2 * BORDER, CELL[1] + 2 * BORDER + CAPTION


def _cell(path: str, colour: Tuple[int, int, int], lines: Sequence[str]) -> Image.Image:
    canvas = Image.new("RGB", cell_size(), "white")
    canvas.paste(colour, (0, 0, CELL[0] + 2 * BORDER, CELL[1] + 2 * BORDER))
    with Image.open(path) as img:
        canvas.paste(img.convert("RGB").resize(CELL), (BORDER, BORDER))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((2, CELL[1] + 2 * BORDER + 1 + 11 * i), line, fill=(0, 0, 0))
    return canvas


def ranked_gallery(dist_row: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray,
                   g_camids: np.ndarray, topk: int) -> np.ndarray:
    """Gallery indices of the ``topk`` nearest kept entries (same id and camera removed),
    in the evaluation's order (distance, then gallery index)."""
    kept = np.flatnonzero(~((g_pids == q_pid) & (g_camids == q_camid)))
    return kept[np.argsort(dist_row[kept], kind="stable")[:topk]]


def save_rank_lists(distmat: ArrayLike, q_paths: Sequence[str], g_paths: Sequence[str],
                    q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                    g_camids: ArrayLike, out_dir: str | os.PathLike, num_queries: int = 10,
                    topk: int = 10) -> List[Path]:
    """One PNG per query for ``num_queries`` queries spread evenly over the query list: the
    query (blue frame) then its ``topk`` nearest kept gallery images (green: same id, red:
    another id) captioned with id and distance. distmat (Q, G). Returns the written paths."""
    dist = to_numpy(distmat)
    q_pids, g_pids, q_camids, g_camids = map(to_numpy, (q_pids, g_pids, q_camids, g_camids))
    if dist.shape != (len(q_paths), len(g_paths)):
        raise ValueError(f"distmat {dist.shape} does not match {len(q_paths)} query and "
                         f"{len(g_paths)} gallery paths")
    chosen = np.unique(np.linspace(0, len(q_paths) - 1, min(num_queries, len(q_paths)))
                       .astype(np.int64)) if num_queries > 0 else []
    out, written = Path(out_dir), []
    for i in chosen:
        cells = [_cell(q_paths[i], QUERY, [f"query id {q_pids[i]}", f"cam {q_camids[i]}"])]
        for j in ranked_gallery(dist[i], q_pids[i], q_camids[i], g_pids, g_camids, topk):
            colour = MATCH if g_pids[j] == q_pids[i] else MISMATCH
            cells.append(_cell(g_paths[j], colour, [f"id {g_pids[j]}", f"d {dist[i, j]:.4f}"]))
        grid = Image.new("RGB", (cell_size()[0] * len(cells), cell_size()[1]), "white")
        for n, c in enumerate(cells):
            grid.paste(c, (n * cell_size()[0], 0))
        path = out / f"query_{i:05d}_{Path(q_paths[i]).stem}.png"
        written.append(atomic_save(path, lambda p: grid.save(p, format="PNG")))
    return written


def save_roc_plot(fpr: np.ndarray, tpr: np.ndarray, path: str | os.PathLike) -> Path:
    """A ROC curve (FPR on a log axis from 1e-5) as a PNG; returns ``path``."""
    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(np.maximum(fpr, 1e-6), tpr)
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate (impostor pairs accepted)")
    ax.set_ylabel("true positive rate (genuine pairs accepted)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return atomic_save(path, lambda p: fig.savefig(p, format="png"))
