"""The adaptation flow behind ``tools/adapt.py``.

Stage 1 trains the source-supervised model, or reuses the one cached under
``ADAPT.SOURCE_CACHE/<source>-<hash of the stage-1 config>``, and evaluates it on the target
(direct transfer) and on the source's own test set. Stage 2 runs the method
(``ADAPT.METHOD``) on the target training images *without their identities*, evaluating on the
target query/gallery every ``TEST.EVAL_PERIOD`` epochs. ``results.json`` holds both stages,
the per-epoch curves and the run's metadata.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Dict, Optional, Sequence

from uda_reid.config import Config, apply_overrides, get_default_config, load_config
from uda_reid.config.schema import to_dict

# Config parts that decide the stage-1 model (the cache key); TEST, ADAPT, CAMSTYLE and
# OUTPUT_DIR do not.
STAGE1_KEYS = ("MODEL", "INPUT", "DATASETS", "DATALOADER", "SOLVER", "SEED",
               "CUDNN_DETERMINISTIC")
DEFAULT_OUTPUT_DIR = get_default_config().OUTPUT_DIR


def build_adapt_config(source: Optional[str] = None, target: Optional[str] = None,
                       method: Optional[str] = None, config_file: Optional[str] = None,
                       output_dir: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then ``config_file``, then the named arguments, then ``KEY VALUE`` pairs.

    Without an explicit output folder the run writes to
    ``output/adapt/<source>2<target>/<method>``.
    """
    cfg = load_config(config_file)
    for key, value in (("SOURCE", source), ("TARGET", target), ("METHOD", method)):
        if value is not None:
            setattr(cfg.ADAPT, key, value)
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    apply_overrides(cfg, list(overrides))
    if cfg.OUTPUT_DIR == DEFAULT_OUTPUT_DIR and output_dir is None:
        cfg.OUTPUT_DIR = (f"{DEFAULT_OUTPUT_DIR}/adapt/{cfg.ADAPT.SOURCE}2{cfg.ADAPT.TARGET}/"
                          f"{cfg.ADAPT.METHOD}")
    return cfg


def source_stage_config(cfg: Config) -> Config:
    """The stage-1 config: supervised training on ``ADAPT.SOURCE``, tested on it."""
    stage = copy.deepcopy(cfg)
    stage.DATASETS.NAMES = (cfg.ADAPT.SOURCE,)
    stage.DATASETS.TESTS = (cfg.ADAPT.SOURCE,)
    return stage


def source_key(cfg: Config) -> str:
    """Short hash of everything that decides the stage-1 model (device and tests excluded)."""
    data = to_dict(source_stage_config(cfg))
    kept: Dict[str, Any] = {k: data[k] for k in STAGE1_KEYS}
    kept["MODEL"] = {k: v for k, v in kept["MODEL"].items() if k != "DEVICE"}
    kept["DATASETS"] = {k: v for k, v in kept["DATASETS"].items() if k != "TESTS"}
    blob = json.dumps(kept, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
