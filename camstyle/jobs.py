"""Dataset-level jobs behind ``tools/camstyle.py``: train, generate, verify (and config loading)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from camstyle.config import build_trainer, load_generator, model_spec, resolve_device
from camstyle.data import CameraImageDataset, CameraSample, camera_samples
from camstyle.evaluate import evaluate_transfer, reid_embedder
from camstyle.generate import generate_shard
from camstyle.trainer import BatchStream, fit, load_checkpoint, sample_images
from camstyle.verify import VerifyReport, verify_folder
from uda_reid.adapt.camstyle_data import CAMSTYLE_DIR
from uda_reid.config import Config, ConfigError, load_config, save_config
from uda_reid.config.io import config_diff
from uda_reid.data.datasets import DATASETS, build_dataset_from_config
from uda_reid.engine.run_folder import check_output_folder, clear_run_outputs
from uda_reid.utils.atomic import atomic_write_json

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "camstyle"
# A train run's files in its OUTPUT_DIR: those that mark the folder as taken, and all of them.
TRAIN_MARKERS = ("last.pth", "config.yaml", "camstyle_train.json")
TRAIN_OUTPUTS = (*TRAIN_MARKERS, "tensorboard/events.out.tfevents.*", "samples/iter_*.png")


def load_camstyle_config(dataset: str, config_file: Optional[str] = None,
                         overrides: Sequence[str] = ()) -> Config:
    """``config_file``, else ``configs/camstyle/<dataset>.yml`` when it exists, else defaults;
    then ``KEY VALUE`` overrides."""
    if config_file is None:
        default = CONFIG_DIR / f"{DATASETS.canonical(dataset)}.yml"
        config_file = str(default) if default.is_file() else None
    return load_config(config_file, overrides)


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


def train(cfg: Config, dataset_name: str, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> Dict[str, Any]:
    """Train the camera StarGAN of ``dataset_name`` into ``cfg.OUTPUT_DIR``; returns a summary
    (also written to ``camstyle_train.json``). Nothing is written there before the folder,
    the dataset and (with ``resume``) the checkpoint have been checked; ``overwrite`` deletes
    the previous train run's outputs first."""
    cs, out = cfg.CAMSTYLE, Path(cfg.OUTPUT_DIR)
    check_train_output(cfg, out, resume, overwrite)
    random.seed(cfg.SEED)
    np.random.seed(cfg.SEED)
    torch.manual_seed(cfg.SEED)
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    images = CameraImageDataset(samples, cs.IMAGE_SIZE, cs.FLIP)
    trainer = build_trainer(cs, num_cameras, resolve_device(cfg.MODEL.DEVICE))
    stream = BatchStream(images, cs.BATCH_SIZE, seed=cfg.SEED, num_workers=cs.NUM_WORKERS)
    extra = {"model_spec": model_spec(cs, num_cameras), "dataset": dataset.name,
             "train_seconds": 0.0, "train_cpu_seconds": 0.0}
    if resume:
        state = load_checkpoint(trainer, stream, out / "last.pth")
        extra.update({k: state[k] for k in ("train_seconds", "train_cpu_seconds")})
    else:
        if overwrite:
            clear_run_outputs(out, TRAIN_OUTPUTS)
        save_config(cfg, out / "config.yaml")
    summary = fit(trainer, stream, out, sample_batch=sample_images(images, cs.NUM_SAMPLE_IMAGES),
                  log_period=cs.LOG_PERIOD, sample_period=cs.SAMPLE_PERIOD,
                  checkpoint_period=cs.CHECKPOINT_PERIOD, extra_state=extra, progress=progress)
    summary.update({"dataset": dataset.name, "num_cameras": num_cameras,
                    "num_images": len(samples), "checkpoint": str(out / "last.pth")})
    atomic_write_json(out / "camstyle_train.json", summary)
    return summary


def generate(cfg: Config, dataset_name: str, checkpoint: str, shard: Tuple[int, int] = (0, 1),
             batch_size: Optional[int] = None, progress: bool = True) -> Dict[str, int]:
    """Run shard ``shard`` of the generation job for the dataset's training images."""
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    generator, image_size, _ = load_generator(checkpoint, resolve_device(cfg.MODEL.DEVICE))
    if generator.num_cameras != num_cameras:
        raise ValueError(f"{checkpoint} was trained for {generator.num_cameras} cameras; "
                         f"{dataset.name} has {num_cameras}")
    return generate_shard(generator, samples, camstyle_folder(dataset), image_size=image_size,
                          shard=shard, batch_size=batch_size or cfg.CAMSTYLE.GEN_BATCH_SIZE,
                          jpeg_quality=cfg.CAMSTYLE.JPEG_QUALITY, progress=progress)


def verify(cfg: Config, dataset_name: str, decode: bool = True) -> VerifyReport:
    """Missing / extra / unreadable files of the dataset's camstyle folder."""
    dataset, samples, num_cameras = dataset_cameras(cfg, dataset_name)
    return verify_folder(samples, camstyle_folder(dataset), num_cameras, decode=decode)


def evaluate(cfg: Config, dataset_name: str, checkpoint: str, output: str | Path
             ) -> Dict[str, Any]:
    """The measured check of ``camstyle.evaluate`` on the dataset; written to ``output``."""
    dataset, _, num_cameras = dataset_cameras(cfg, dataset_name)
    device = resolve_device(cfg.MODEL.DEVICE)
    generator, image_size, meta = load_generator(checkpoint, device)
    ev = cfg.CAMSTYLE.EVAL
    embedder, embedder_name = None, ""
    if ev.EMBEDDING_WEIGHTS:
        embedder = reid_embedder(ev.EMBEDDING_WEIGHTS, dataset.name, device)
        embedder_name = f"ReID model {ev.EMBEDDING_WEIGHTS}"
    result = {"dataset": dataset.name, "checkpoint": str(checkpoint),
              "gan_iterations": meta["iteration"],
              "gan_train_seconds": meta.get("train_seconds"),
              "gan_train_cpu_seconds": meta.get("train_cpu_seconds"),
              "model_spec": meta["model_spec"],
              **evaluate_transfer(generator, image_size, dataset.train, dataset.query,
                                  dataset.gallery, classifier_size=ev.CLASSIFIER_SIZE,
                                  epochs=ev.EPOCHS, max_queries=ev.MAX_QUERIES,
                                  max_gallery=ev.MAX_GALLERY,
                                  jpeg_quality=cfg.CAMSTYLE.JPEG_QUALITY, seed=cfg.SEED,
                                  embedder=embedder, embedder_name=embedder_name)}
    atomic_write_json(output, result)
    return result
