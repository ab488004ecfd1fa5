"""Dataset-level jobs behind ``tools/camstyle.py``: train, generate, verify, evaluate (and config
loading), for ``CAMSTYLE.MODEL`` stargan (one model in ``OUTPUT_DIR/last.pth``) or cyclegan (one
per camera pair under ``OUTPUT_DIR/pairs/``, :mod:`camstyle.cyclegan_train`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from camstyle.cyclegan_train import (camera_pairs, check_pair_folders, shard_pairs,
                                     train_pairs)
from camstyle.data import CameraSample, camera_samples
from camstyle.evaluate import Embedder, evaluate_transfers, reid_embedder
from camstyle.generate import generate_pair_shard, generate_shard, pair_units, unit_pairs
from camstyle.stargan_train import build_stargan_trainer, resume_state
from camstyle.translators import PairTranslator, load_cyclegan_translator, load_translator
from camstyle.verify import VerifyReport, verify_folder
from uda_reid.adapt.camstyle_data import CAMSTYLE_DIR
from uda_reid.config import Config, ConfigError, load_config, save_config
from uda_reid.config.io import config_diff
from uda_reid.config.schema import to_dict
from uda_reid.config.sections.camstyle import MODELS
from uda_reid.data.datasets import DATASETS, build_dataset_from_config
from uda_reid.data.transforms import build_transforms_from_config
from uda_reid.engine.device import resolve_device
from uda_reid.engine.hooks import WallClockHook, current_lr
from uda_reid.engine.run_folder import check_output_folder, clear_run_outputs
from uda_reid.engine.trained_model import load_trained_model
from uda_reid.recipes import recipe_dir
from uda_reid.utils.atomic import atomic_write_json

# A train run's files in its OUTPUT_DIR: those that mark the folder as taken, and all of them.
TRAIN_MARKERS = ("last.pth", "config.yaml", "camstyle_train.json")
TRAIN_OUTPUTS = (*TRAIN_MARKERS, "tensorboard/events.out.tfevents.*", "samples/iter_*.png")


def load_camstyle_config(dataset: str, config_file: Optional[str] = None,
                         overrides: Sequence[str] = ()) -> Config:
    """``config_file``, else the recipe ``camstyle/<dataset>.yml`` when the recipe folder
    (:func:`uda_reid.recipes.recipe_dir`; its absence is an error) has one, else defaults; then
    ``KEY VALUE`` overrides."""
    if config_file is None:
        default = recipe_dir() / "camstyle" / f"{DATASETS.canonical(dataset)}.yml"
        config_file = str(default) if default.is_file() else None
    return load_config(config_file, overrides)


def camstyle_model(cfg: Config) -> str:
    """``CAMSTYLE.MODEL``, checked."""
    model = cfg.CAMSTYLE.MODEL
    if model not in MODELS:
        raise ConfigError(f"CAMSTYLE.MODEL must be one of {', '.join(MODELS)}, got '{model}'")
    return model


def default_checkpoint(cfg: Config) -> Path:
    """What the train job of ``CAMSTYLE.MODEL`` leaves: ``OUTPUT_DIR/last.pth`` (StarGAN) or the
    folder ``OUTPUT_DIR`` holding ``pairs/`` (CycleGAN)."""
    out = Path(cfg.OUTPUT_DIR)
    return out if camstyle_model(cfg) == "cyclegan" else out / "last.pth"


def dataset_cameras(cfg: Config, name: str) -> Tuple[Any, List[CameraSample], int]:
    """(dataset object, training (path, camid) list, number of cameras)."""
    dataset = build_dataset_from_config(cfg, name)
    return dataset, camera_samples(dataset.train), int(dataset.num_cameras)


def camstyle_folder(dataset: Any) -> Path:
    """``<dataset root>/bounding_box_train_camstyle`` (the ECN contract)."""
    return Path(dataset.root) / CAMSTYLE_DIR


def check_train_output(cfg: Config, out: Path, resume: bool, overwrite: bool) -> None:
    """Before a train run writes anything: ``out`` holds no other train run unless ``resume``
    (its checkpoint must exist and its config match) or ``overwrite``."""
    check_output_folder(out, resume, overwrite, TRAIN_MARKERS, what="a CamStyle train run")
    if not resume:
        return
    last, saved = out / "last.pth", out / "config.yaml"
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {last}")
    if saved.is_file():
        changed = config_diff(cfg, load_config(saved))
        if changed:
            raise ConfigError(f"--resume with a config that differs from {saved} in: "
                              f"{', '.join(changed)}")


# Keys a CycleGAN shard's config must share with the run's config.yaml (other shards may run
# on other devices or with other progress settings).
CYCLEGAN_SHARED_KEYS = ("SEED", "DATASETS.", "CAMSTYLE.MODEL", "CAMSTYLE.CYCLEGAN.")


def train_cyclegan(cfg: Config, dataset_name: str, shard: Tuple[int, int] = (0, 1),
                   resume: bool = False, progress: bool = True, overwrite: bool = False
                   ) -> Dict[str, Any]:
    """Train the CycleGANs of the camera pairs of shard ``shard`` into ``OUTPUT_DIR/pairs``;
    returns a summary per pair. ``OUTPUT_DIR/config.yaml`` is written by the first shard; a
    later one must match it in :data:`CYCLEGAN_SHARED_KEYS` (unless ``overwrite``)."""
    out = Path(cfg.OUTPUT_DIR)
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    check_pair_folders(out, shard_pairs(camera_pairs(num_cameras), *shard), resume, overwrite)
    saved = out / "config.yaml"
    if saved.is_file() and not overwrite:
        changed = [k for k in config_diff(cfg, load_config(saved))
                   if k.startswith(CYCLEGAN_SHARED_KEYS)]
        if changed:
            raise ConfigError(f"the CycleGAN run in {out} was started with a config that "
                              f"differs from {saved} in: {', '.join(changed)}")
    else:
        save_config(cfg, saved)
    identity = {"CYCLEGAN": to_dict(cfg.CAMSTYLE.CYCLEGAN), "SEED": cfg.SEED,
                "dataset": dataset.name}
    summary = train_pairs(cfg.CAMSTYLE.CYCLEGAN, samples, num_cameras, out, identity=identity,
                          seed=cfg.SEED, shard=shard, resume=resume, overwrite=overwrite,
                          device=resolve_device(cfg.MODEL.DEVICE), progress=progress)
    return {"dataset": dataset.name, "num_cameras": num_cameras, "num_images": len(samples),
            **summary}


def train(cfg: Config, dataset_name: str, resume: bool = False, progress: bool = True,
          overwrite: bool = False, shard: Tuple[int, int] = (0, 1)) -> Dict[str, Any]:
    """Train the camera GAN of ``dataset_name`` into ``cfg.OUTPUT_DIR``: for CycleGAN see
    :func:`train_cyclegan` (``shard`` picks the camera pairs); for StarGAN (one model, ``shard``
    must be 0/1) returns a summary also written to ``camstyle_train.json``. Nothing is written
    before the folder, the dataset and (with ``resume``) the checkpoint have been checked;
    ``overwrite`` deletes the previous train run's outputs first."""
    if camstyle_model(cfg) == "cyclegan":
        return train_cyclegan(cfg, dataset_name, shard, resume, progress, overwrite)
    if tuple(shard) != (0, 1):
        raise ConfigError("--shard splits CycleGAN training over camera pairs; a StarGAN is one "
                          "model (CAMSTYLE.MODEL stargan)")
    cs, out = cfg.CAMSTYLE, Path(cfg.OUTPUT_DIR)
    check_train_output(cfg, out, resume, overwrite)
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    identity = {"CAMSTYLE": to_dict(cs), "SEED": cfg.SEED, "dataset": dataset.name}
    trainer, checkpointer = build_stargan_trainer(
        cs, samples, num_cameras, out, identity=identity, meta={"dataset": dataset.name},
        seed=cfg.SEED, device=resolve_device(cfg.MODEL.DEVICE), progress=progress)
    if resume:
        trainer.load_state_dict(resume_state(trainer, checkpointer))
    else:
        if overwrite:
            clear_run_outputs(out, TRAIN_OUTPUTS)
        save_config(cfg, out / "config.yaml")
    trainer.train()
    clock = next(h for h in trainer.hooks if isinstance(h, WallClockHook))
    summary = {"iterations": trainer.completed_epochs, "train_seconds": clock.elapsed,
               "train_cpu_seconds": clock.cpu_elapsed,
               "last_losses": {**trainer.losses, **trainer.step.scalars(),
                               "lr": current_lr(trainer)},
               "dataset": dataset.name, "num_cameras": num_cameras, "num_images": len(samples),
               "checkpoint": str(out / "last.pth")}
    atomic_write_json(out / "camstyle_train.json", summary)
    return summary


def generate(cfg: Config, dataset_name: str, checkpoint: str, shard: Tuple[int, int] = (0, 1),
             batch_size: Optional[int] = None, progress: bool = True) -> Dict[str, int]:
    """Run shard ``shard`` of the generation job for the dataset's training images (with
    ``CAMSTYLE.MODEL`` cyclegan, ``checkpoint`` is the train run's folder and the shard loads
    only the pair generators its units need)."""
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    device = resolve_device(cfg.MODEL.DEVICE)
    options = {"shard": shard, "batch_size": batch_size or cfg.CAMSTYLE.GEN_BATCH_SIZE,
               "jpeg_quality": cfg.CAMSTYLE.JPEG_QUALITY, "progress": progress}
    if camstyle_model(cfg) == "cyclegan":
        pairs = unit_pairs(pair_units(samples, num_cameras, *shard))
        if not pairs:  # more shards than units: nothing to load or do
            translator = PairTranslator({}, num_cameras)
            image_size = cfg.CAMSTYLE.CYCLEGAN.CROP_SIZE
        else:
            translator, image_size, _ = load_cyclegan_translator(checkpoint, num_cameras,
                                                                 device, pairs)
        return generate_pair_shard(translator, samples, camstyle_folder(dataset),
                                   image_size=image_size, **options)
    generator, image_size, _ = load_translator(checkpoint, num_cameras, device)
    return generate_shard(generator, samples, camstyle_folder(dataset), image_size=image_size,
                          **options)


def verify(cfg: Config, dataset_name: str, decode: bool = True) -> VerifyReport:
    """Missing / extra / unreadable files of the dataset's camstyle folder."""
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    return verify_folder(samples, camstyle_folder(dataset), num_cameras, decode=decode)


def load_reid_embedder(weights: str | Path, dataset_name: str,
                       device: torch.device | str = "cpu", batch_size: int = 128) -> Embedder:
    """The identity embedding of ``CAMSTYLE.EVAL.EMBEDDING_WEIGHTS``: the training run's
    ``config.yaml`` beside ``weights`` gives the model and its test transform; SIE backbones read
    the cameras as the target domain's when ``dataset_name`` is not one the model was trained
    on."""
    weights = Path(weights)
    config = weights.with_name("config.yaml")
    if not config.is_file():
        raise FileNotFoundError(f"CAMSTYLE.EVAL.EMBEDDING_WEIGHTS: no config.yaml beside "
                                f"{weights} (expected a uda_reid training run's checkpoint)")
    run_cfg = load_config(config)
    domain = "source" if dataset_name in run_cfg.DATASETS.NAMES else "target"
    return reid_embedder(load_trained_model(run_cfg, weights, device),
                         build_transforms_from_config(run_cfg, is_train=False), domain, device,
                         batch_size)


def evaluate(cfg: Config, dataset_name: str, checkpoints: Sequence[str], output: str | Path
             ) -> Dict[str, Any]:
    """The measured check of ``camstyle.evaluate`` on the dataset, written to ``output``; each
    checkpoint is a StarGAN ``last.pth`` or a CycleGAN run folder. One checkpoint: its result.
    Several: ``generators`` (label -> result, all scored on the same classifier, embedding and
    images) and ``side_by_side`` (their main figures in rows)."""
    dataset, _, num_cameras = dataset_cameras(cfg, dataset_name)
    device = resolve_device(cfg.MODEL.DEVICE)
    loaded = {str(path): load_translator(path, num_cameras, device) for path in checkpoints}
    ev = cfg.CAMSTYLE.EVAL
    embedder, embedder_name = None, ""
    if ev.EMBEDDING_WEIGHTS:
        embedder = load_reid_embedder(ev.EMBEDDING_WEIGHTS, dataset.name, device)
        embedder_name = f"ReID model {ev.EMBEDDING_WEIGHTS}"
    scores = evaluate_transfers(
        {path: (translator, size) for path, (translator, size, _) in loaded.items()},
        dataset.train, dataset.query, dataset.gallery, classifier_size=ev.CLASSIFIER_SIZE,
        epochs=ev.EPOCHS, max_queries=ev.MAX_QUERIES, max_gallery=ev.MAX_GALLERY,
        jpeg_quality=cfg.CAMSTYLE.JPEG_QUALITY, seed=cfg.SEED, embedder=embedder,
        embedder_name=embedder_name)
    results = {path: {"dataset": dataset.name, "checkpoint": path, **training_facts(meta),
                      **scores[path]}
               for path, (_, _, meta) in loaded.items()}
    if len(results) == 1:
        result = next(iter(results.values()))
    else:
        result = {"dataset": dataset.name, "side_by_side": [side_by_side_row(r)
                                                            for r in results.values()],
                  "generators": results}
    atomic_write_json(output, result)
    return result


def training_facts(meta: Dict[str, Any]) -> Dict[str, Any]:
    """What a translator's checkpoint says about its training."""
    if meta["model"] == "cyclegan":
        return {"model": "cyclegan", "gan_pairs": meta["pairs"],
                "gan_epochs_total": meta["epochs"], "model_spec": meta["model_spec"]}
    return {"model": "stargan", "gan_iterations": meta["iteration"],
            "gan_train_seconds": meta.get("train_seconds"),
            "gan_train_cpu_seconds": meta.get("train_cpu_seconds"),
            "model_spec": meta["model_spec"]}


def side_by_side_row(result: Dict[str, Any]) -> Dict[str, Any]:
    """One translator's main figures: transfer rate and identity keeping."""
    held, seen = result["identity_heldout"], result["identity_train_ids"]
    return {"model": result["model"], "checkpoint": result["checkpoint"],
            "target_camera_rate": result["transfer"]["target_camera_rate"],
            "source_camera_rate": result["transfer"]["source_camera_rate"],
            "rank1_heldout_real": held["rank1_real"],
            "rank1_heldout_generated": held["rank1_generated"],
            "mAP_heldout_generated": held["mAP_generated"],
            "rank1_train_ids_generated": seen["rank1_generated"]}
