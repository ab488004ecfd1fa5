"""A run's output folder (``OUTPUT_DIR``): its identity, the checks before a run writes
into it (another run there, ``--resume`` of the same config), and claiming it (``config.yaml``,
``log.txt``, seeding). The folder rules without a config are :mod:`uda_reid.engine.run_folder`."""
from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from uda_reid.config import Config, load_config, save_config
from uda_reid.config.renamed import renamed_mapping
from uda_reid.config.schema import to_dict
from uda_reid.engine.checkpoint import CheckpointMismatchError, identity_diff
from uda_reid.engine.distributed import init_distributed
from uda_reid.engine.logger import setup_logger
from uda_reid.engine.run_folder import check_output_folder, clear_run_outputs
from uda_reid.engine.seed import seed_everything
from uda_reid.utils.distributed import barrier, on_main_process

logger = logging.getLogger(__name__)

# Keys that say where a run writes or which device it uses, not what it computes.
NON_IDENTITY_KEYS = ("OUTPUT_DIR", "MODEL.DEVICE")


def config_identity(cfg: Config) -> Dict[str, Any]:
    """The resolved config without :data:`NON_IDENTITY_KEYS` (what a resume must match)."""
    data = to_dict(cfg)
    for key in NON_IDENTITY_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return data


def saved_config_identity(identity: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's saved :func:`config_identity` with deprecated key names read as the new
    ones (a run folder from before a rename resumes as the same run)."""
    return renamed_mapping(identity, "the checkpoint's config identity", warn=False)


def check_resumable(cfg: Config) -> None:
    """Before anything is overwritten: the ``config.yaml`` of the run being resumed must have
    the same identity as ``cfg`` (the error names the keys that differ); an old
    ``config.yaml`` with deprecated key names is read under the new ones."""
    saved = Path(cfg.OUTPUT_DIR) / "config.yaml"
    if saved.is_file():
        diff = identity_diff(config_identity(load_config(saved)), config_identity(cfg))
        if diff:
            raise CheckpointMismatchError(
                f"--resume: {saved} differs from the given config: {'; '.join(diff[:10])}")


def check_output_dir(cfg: Config, resume: bool = False, overwrite: bool = False) -> None:
    """Everything about ``OUTPUT_DIR`` that must hold before a run writes into it: no other run
    there unless ``resume`` (then its ``config.yaml`` must match, :func:`check_resumable`) or
    ``overwrite``. Writes nothing."""
    check_output_folder(cfg.OUTPUT_DIR, resume, overwrite)
    if resume:
        check_resumable(cfg)


def claim_output_dir(cfg: Config, resume: bool = False, overwrite: bool = False) -> Path:
    """After :func:`check_output_dir`: with ``overwrite`` delete the previous run's outputs,
    then create ``OUTPUT_DIR``, log to ``log.txt`` (and stdout) and write ``config.yaml``."""
    check_output_dir(cfg, resume, overwrite)
    barrier()  # under torch.distributed every rank has checked before rank 0 writes
    output_dir = Path(cfg.OUTPUT_DIR)
    removed = (on_main_process(lambda: clear_run_outputs(output_dir)) or []) if overwrite else []
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logger(output_dir)
    if removed:
        logger.warning("--overwrite: deleted the previous run's %s in %s",
                       ", ".join(p.name for p in removed), output_dir)
    logger.info("Python %s, torch %s, CUDA available: %s", platform.python_version(),
                torch.__version__, torch.cuda.is_available())
    on_main_process(lambda: save_config(cfg, output_dir / "config.yaml"))
    logger.info("Resolved config written to %s", output_dir / "config.yaml")
    return output_dir


def default_setup(cfg: Config, resume: bool = False, overwrite: bool = False) -> Path:
    """Under a launcher (torchrun, SLURM) join the process group first (only rank 0 writes);
    then :func:`claim_output_dir` and seed every generator with ``SEED``."""
    init_distributed(cfg.MODEL.DEVICE)
    output_dir = claim_output_dir(cfg, resume, overwrite)
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    return output_dir
