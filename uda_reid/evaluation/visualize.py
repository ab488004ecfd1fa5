"""Rank-list grids and ROC plots as PNG files (written atomically)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from uda_reid.utils.atomic import atomic_save  # noqa: E402

CELL = (64, 128)  # (width, height) of one image in a grid
BORDER = 4
GREEN, RED, BLUE = (0, 170, 0), (210, 0, 0), (0, 0, 200)


def _cell(path: str, colour, caption: str) -> Image.Image:
    w, h = CELL
    canvas = Image.new("RGB", (w + 2 * BORDER, h + 2 * BORDER + 14), "white")
    canvas.paste(Image.new("RGB", (w + 2 * BORDER, h + 2 * BORDER), colour), (0, 0))
    with Image.open(path) as img:
        canvas.paste(img.convert("RGB").resize(CELL), (BORDER, BORDER))
    ImageDraw.Draw(canvas).text((2, h + 2 * BORDER), caption, fill=(0, 0, 0))
    return canvas


def save_rank_lists(distmat: np.ndarray, q_paths: Sequence[str], g_paths: Sequence[str],
                    q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                    g_camids: np.ndarray, out_dir: str | os.PathLike, num_queries: int = 10,
                    topk: int = 10) -> List[Path]:
    """One PNG per query (the first ``num_queries``): the query (blue) then its top-``topk``
    kept gallery images, green if same id, red otherwise, with distances. Same-id same-camera
    gallery entries are removed first, as in evaluation."""
    out = Path(out_dir)
    written = []
    for i in range(min(num_queries, len(q_paths))):
        keep = ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        idx = np.flatnonzero(keep)
        order = idx[np.argsort(distmat[i, idx], kind="stable")[:topk]]
        cells = [_cell(q_paths[i], BLUE, "query")]
        cells += [_cell(g_paths[j], GREEN if g_pids[j] == q_pids[i] else RED,
                        f"{distmat[i, j]:.3f}") for j in order]
        grid = Image.new("RGB", (sum(c.width for c in cells), cells[0].height), "white")
        x = 0
        for c in cells:
            grid.paste(c, (x, 0))
            x += c.width
        path = out / f"query_{i:04d}_{Path(q_paths[i]).stem}.png"
        written.append(atomic_save(path, lambda p: grid.save(p, format="PNG")))
    return written


def save_roc_plot(fpr: np.ndarray, tpr: np.ndarray, path: str | os.PathLike) -> Path:
    """A ROC curve (log-scaled FPR) as a PNG."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.maximum(fpr, 1e-6), tpr)
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate (impostor pairs accepted)")
    ax.set_ylabel("true positive rate (genuine pairs accepted)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    result = atomic_save(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return result
