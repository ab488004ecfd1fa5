"""Running a table cell through the same code path as ``tools/adapt.py``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

from uda_reid.reproduce.table import Cell, Runner

# ECN's ablation (Zhong et al., CVPR 2019, Table 2): table methods that run the ``ecn`` recipe
# of the pair with the target terms switched - exemplar (E), camera (C: the camera-style
# images) and neighbourhood (N: KNN > 0, the recipe's value) invariance; ``ecn_source`` is the
# same network and schedule with the source loss alone (LAMBDA 0).
ECN_ABLATION = ("ecn_source", "ecn_e", "ecn_ec", "ecn_en", "ecn_ecn")
# name -> (method whose recipe runs, KEY VALUE overrides applied after the table's own)
VARIANTS = {
    "ecn_source": ("ecn", ("ADAPT.ECN.LAMBDA", "0.0", "ADAPT.ECN.CAMSTYLE", "False",
                           "ADAPT.ECN.KNN", "0")),
    "ecn_e": ("ecn", ("ADAPT.ECN.CAMSTYLE", "False", "ADAPT.ECN.KNN", "0")),
    "ecn_ec": ("ecn", ("ADAPT.ECN.CAMSTYLE", "True", "ADAPT.ECN.KNN", "0")),
    "ecn_en": ("ecn", ("ADAPT.ECN.CAMSTYLE", "False")),
    "ecn_ecn": ("ecn", ("ADAPT.ECN.CAMSTYLE", "True")),
}
# Mixture label transport's ablation (issue "MLT as published"): the synthetic ``mlt`` recipe
# of the pair built up one piece at a time from ``cluster``: three granularities, the per-epoch
# label transport (re-clustering every second epoch), the labelled source batch, domain-specific
# BatchNorm, the mean teacher.
MLT_ABLATION = ("cluster", "mlt_gran", "mlt_transport", "mlt_source", "mlt_dsbn", "mlt_teacher")


def _mlt_cell(transport: bool, source: bool, dsbn: bool, teacher: bool) -> Tuple[str, ...]:
    """Every piece of the ablation switched explicitly, whatever the recipe has on."""
    return ("ADAPT.PSEUDO_LABEL.TRANSPORT", "epoch" if transport else "none",
            "ADAPT.PSEUDO_LABEL.RECLUSTER_PERIOD", "2" if transport else "1",
            "ADAPT.PSEUDO_LABEL.MIXTURE", str(source), "ADAPT.PSEUDO_LABEL.DSBN", str(dsbn),
            "ADAPT.PSEUDO_LABEL.MEAN_TEACHER", str(teacher))


VARIANTS.update({
    "mlt_gran": ("mlt", _mlt_cell(False, False, False, False)),
    "mlt_transport": ("mlt", _mlt_cell(True, False, False, False)),
    "mlt_source": ("mlt", _mlt_cell(True, True, False, False)),
    "mlt_dsbn": ("mlt", _mlt_cell(True, True, True, False)),
    "mlt_teacher": ("mlt", _mlt_cell(True, True, True, True)),
})
REAL_PAIRS = ["market:duke", "duke:market", "market:msmt", "duke:msmt"]
SYNTHETIC_PAIRS = ["synth-market:synth-duke", "synth-duke:synth-market",
                   "synth-market:synth-msmt", "synth-duke:synth-msmt"]
TABLES = {
    "uda": {"pairs": REAL_PAIRS,
            "methods": ["direct", "ecn", "cluster", "mlt", "spcl", "mmt", "cluster_contrast"]},
    "synthetic": {"pairs": SYNTHETIC_PAIRS, "methods": ["direct", "ecn", "cluster", "mlt", "spcl", "mmt"]},
    "ecn_ablation": {"pairs": ["duke:market", "market:duke"], "methods": list(ECN_ABLATION)},
    "synthetic_ecn_ablation": {"pairs": SYNTHETIC_PAIRS[:2], "methods": list(ECN_ABLATION)},
    "synthetic_mlt_ablation": {"pairs": SYNTHETIC_PAIRS[:1], "methods": list(MLT_ABLATION)},
}


def recipe_of(method: str) -> Tuple[str, Tuple[str, ...]]:
    """The method whose recipe a table method runs and the overrides that make it the cell's
    (:data:`VARIANTS`; any other name is a method of its own, without overrides)."""
    return VARIANTS.get(method, (method, ()))


def cell_config(cell: Cell, folder: Path, overrides: Sequence[str], source_cache: Path):
    """The cell's config, built like ``tools/adapt.py`` builds it: the recipe of the cell's
    method (:func:`recipe_of`) for the pair, ``overrides``, the variant's switches, the
    cell's seed and the shared source-model cache."""
    from uda_reid.adapt.pipeline import build_adapt_config

    method, switches = recipe_of(cell.method)
    return build_adapt_config(cell.source, cell.target, method, None, str(folder),
                              [*overrides, *switches, "SEED", str(cell.seed),
                               "ADAPT.SOURCE_CACHE", str(source_cache)])


def adapt_runner(overrides: Sequence[str], source_cache: Path) -> Runner:
    """A runner building each cell's config with :func:`cell_config`, so cells that need the
    same source model train it once."""
    from uda_reid.adapt.pipeline import run_adaptation

    def run(cell: Cell, folder: Path) -> dict:
        cfg = cell_config(cell, folder, overrides, source_cache)
        started = (folder / "last.pth").is_file()  # else a failed try left nothing to keep
        return run_adaptation(cfg, resume=started, overwrite=not started)

    return run
