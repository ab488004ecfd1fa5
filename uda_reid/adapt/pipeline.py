"""The adaptation flow behind ``tools/adapt.py``.

Stage 1 trains the source-supervised model, or reuses the one cached under
``ADAPT.SOURCE_CACHE/<source>-<hash of the stage-1 config>``, and evaluates it on the target
(direct transfer) and on the source's own test set. A method that trains in one stage
(``needs_source_model`` False, e.g. ``ADAPT.ECN.PROTOCOL one_stage``) starts instead from the
model's initial weights (the pretrained backbone and a fresh head), evaluated the same way.
Stage 2 runs the method
(``ADAPT.METHOD``) on the target training images *without their identities* (the method gets
the pieces of an :class:`AdaptContext`, never the config), evaluating on the target
query/gallery every ``TEST.EVAL_PERIOD`` epochs as monitoring: the reported model is the last
one (no checkpoint is picked by target test scores). ``results.json`` holds both stages, the
per-epoch curves, the pseudo-label quality and the run's metadata.

Without a source (``--source none``, ``ADAPT.SOURCE none``: fully unsupervised or source-free
adaptation) there is no stage 1 and no source image is read: stage 2 starts from the model as
the config builds it (``MODEL.WEIGHTS``, the backbone's pre-training, or random weights), whose
target metrics are the "before" row; only methods that do not train on the source run so.

A method may ask for the start models of other seeds too (:meth:`AdaptMethod.start_model_seeds`,
e.g. MMT's second network): each is built as the run's own with only ``SEED`` changed (a
source model under that seed's cache key, trained once and reused by every run that needs it)
before stage 2 is seeded, so whether they were trained or reused does not change stage 2.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from uda_reid.adapt.base import AdaptContext, AdaptMethod, StageSettings
from uda_reid.adapt.camstyle_data import CamStyleFolder, check_camstyle_dir
from uda_reid.adapt.guard import GuardedHook, method_inputs
from uda_reid.adapt.monitor import LabelQualityHook
from uda_reid.adapt.registry import METHODS
from uda_reid.adapt.summary import adaptation_summary
from uda_reid.config import Config, ConfigError, apply_overrides, get_default_config, load_config
from uda_reid.config.schema import to_dict
from uda_reid.data.datasets import DATASETS, build_dataset_from_config
from uda_reid.data.datasets.base import ReIDDataset
from uda_reid.data.transforms import build_transforms_from_config
from uda_reid.engine.checkpoint import load_model_weights, read_checkpoint_meta
from uda_reid.engine.device import resolve_device
from uda_reid.engine.evaluate import build_evaluator
from uda_reid.engine.flows import train
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.logger import setup_logger
from uda_reid.engine.output_dir import check_output_dir, default_setup
from uda_reid.engine.results import build_results, write_results
from uda_reid.engine.seed import seed_everything
from uda_reid.engine.trainer_builder import build_trainer, resume_or_start
from uda_reid.losses import build_loss_fn
from uda_reid.models import build_model
from uda_reid.models.weight_names import pretrained_file
from uda_reid.recipes import recipe_dir
from uda_reid.utils.distributed import is_main_process

import uda_reid.adapt.methods  # noqa: F401  (registers the methods)

logger = logging.getLogger(__name__)

# Config parts that decide the stage-1 model (the cache key); TEST, ADAPT, CAMSTYLE and
# OUTPUT_DIR do not.
STAGE1_KEYS = ("MODEL", "INPUT", "DATASETS", "DATALOADER", "SOLVER", "SEED",
               "CUDNN_DETERMINISTIC")
DEFAULT_OUTPUT_DIR = get_default_config().OUTPUT_DIR
NO_SOURCE = "none"  # ADAPT.SOURCE of a run without source data (no stage 1)


def _pair_of(stem: str) -> Optional[Tuple[str, str]]:
    """``"market2duke"`` -> ``("market1501", "dukemtmc")`` (registered names), else None."""
    for i, char in enumerate(stem):
        if char == "2" and stem[:i] in DATASETS and stem[i + 1:] in DATASETS:
            return DATASETS.canonical(stem[:i]), DATASETS.canonical(stem[i + 1:])
    return None


def default_config_file(source: Optional[str], target: Optional[str],
                        method: Optional[str]) -> Optional[Path]:
    """The recipe ``<method>/<source>2<target>.yml`` for the pair (dataset names or aliases,
    e.g. ``market2duke.yml`` for ``market1501`` -> ``dukemtmc``) under
    :func:`uda_reid.recipes.recipe_dir`, if the method has one; a missing recipe folder is an
    error (:class:`uda_reid.recipes.RecipeFolderError`). Without a source (``none``) the
    method's one recipe for the target (its stage-2 settings); several are a
    :class:`ConfigError` asking for ``--config-file``."""
    if not (source and target and method) or target not in DATASETS:
        return None
    no_source = source.lower() == NO_SOURCE
    if not no_source and source not in DATASETS:
        return None
    wanted = (None if no_source else DATASETS.canonical(source), DATASETS.canonical(target))

    def matches(path: Path) -> bool:
        pair = _pair_of(path.stem)
        return pair is not None and pair[1] == wanted[1] and (no_source or pair[0] == wanted[0])

    found = [path for path in sorted((recipe_dir() / method.lower()).glob("*.yml"))
             if matches(path)]
    if len(found) > 1 and no_source:
        raise ConfigError(f"--source none: the method {method} has several recipes for "
                          f"{target} ({', '.join(p.name for p in found)}); give one with "
                          "--config-file")
    return found[0] if found else None


def build_adapt_config(source: Optional[str] = None, target: Optional[str] = None,
                       method: Optional[str] = None, config_file: Optional[str] = None,
                       output_dir: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then ``config_file``, then the named arguments, then ``KEY VALUE`` pairs.

    Without ``config_file`` the method's recipe for the pair is used when the checkout has one
    (:func:`default_config_file`). Dataset aliases become their registered names (``market``
    -> ``market1501``). Without an explicit output folder the run writes to
    ``output/adapt/<source>2<target>/<method>``; so does a run without a source on a recipe
    picked for it (the recipe's folder is its source run's).
    """
    picked = config_file is None
    if picked:
        config_file = default_config_file(source, target, method)
        if config_file is not None:
            logger.info("Using the recipe %s", config_file)
    cfg = load_config(config_file)
    recipe_output_dir = cfg.OUTPUT_DIR if picked else None
    for key, value in (("SOURCE", source), ("TARGET", target), ("METHOD", method)):
        if value is not None:
            setattr(cfg.ADAPT, key, value)
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    apply_overrides(cfg, list(overrides))
    if cfg.ADAPT.SOURCE.lower() == NO_SOURCE:
        cfg.ADAPT.SOURCE = NO_SOURCE
    for key in ("TARGET",) if cfg.ADAPT.SOURCE == NO_SOURCE else ("SOURCE", "TARGET"):
        try:
            setattr(cfg.ADAPT, key, DATASETS.canonical(getattr(cfg.ADAPT, key)))
        except KeyError as err:
            raise ConfigError(f"ADAPT.{key}: {err.args[0]}") from None
    if output_dir is None and (cfg.OUTPUT_DIR == DEFAULT_OUTPUT_DIR or (
            cfg.ADAPT.SOURCE == NO_SOURCE and cfg.OUTPUT_DIR == recipe_output_dir)):
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
    """Short hash of everything that decides the stage-1 model (device and tests excluded).
    ``DATASETS.SYNTH_VERSION`` 1 is left out: the domains as they were before versions
    existed keep the keys, and so the cached models, they had."""
    data = to_dict(source_stage_config(cfg))
    kept: Dict[str, Any] = {k: data[k] for k in STAGE1_KEYS}
    kept["MODEL"] = {k: v for k, v in kept["MODEL"].items() if k != "DEVICE"}
    kept["DATASETS"] = {k: v for k, v in kept["DATASETS"].items()
                        if k != "TESTS" and not (k == "SYNTH_VERSION" and v == 1)}
    blob = json.dumps(kept, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def adapt_stage_config(cfg: Config) -> Config:
    """The stage-2 config: ``ADAPT.SOLVER`` in place of ``SOLVER``, source training data (none
    without a source)."""
    stage = copy.deepcopy(cfg)
    stage.SOLVER = copy.deepcopy(cfg.ADAPT.SOLVER)
    stage.DATASETS.NAMES = () if cfg.ADAPT.SOURCE == NO_SOURCE else (cfg.ADAPT.SOURCE,)
    stage.DATASETS.TESTS = (cfg.ADAPT.TARGET,)
    return stage


def build_method(cfg: Config) -> AdaptMethod:
    """The registered method ``ADAPT.METHOD`` built from the config's ``ADAPT`` section."""
    try:
        method_cls = METHODS.get(cfg.ADAPT.METHOD)
    except KeyError as err:
        raise ConfigError(f"ADAPT.METHOD: {err.args[0]}") from None
    return method_cls.from_config(cfg.ADAPT)


class EpochCurvesHook(HookBase):
    """Keeps each epoch's means of the losses and the step's scalars (from the trainer's
    storage) for ``results.json``, across a resume."""

    def __init__(self) -> None:
        self.curves: Dict[int, Dict[str, float]] = {}

    def after_epoch(self) -> None:
        self.curves[self.trainer.epoch + 1] = self.trainer.storage.epoch_means.means()

    def state_dict(self) -> Dict[str, Any]:
        return {"curves": self.curves}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.curves = {int(k): dict(v) for k, v in state["curves"].items()}


def source_cache_dir(cfg: Config) -> Path:
    """``ADAPT.SOURCE_CACHE/<source>-<source_key>``: where stage 1's model lives."""
    return Path(cfg.ADAPT.SOURCE_CACHE) / f"{cfg.ADAPT.SOURCE}-{source_key(cfg)}"


def train_or_load_source(cfg: Config, device: torch.device) -> Tuple[nn.Module, Dict[str, Any]]:
    """Stage 1: the source model from the cache, trained there first when absent (a killed
    stage-1 run resumes from its ``last.pth``). Returns the model on ``device`` and facts
    about it (cache folder, whether it was reused, number of source classes)."""
    cache = source_cache_dir(cfg)
    reused = (cache / "results.json").is_file()
    if not reused:
        stage = source_stage_config(cfg)
        stage.OUTPUT_DIR = str(cache)
        logger.info("Stage 1: training the source model on %s in %s", cfg.ADAPT.SOURCE, cache)
        started = (cache / "last.pth").is_file()  # else nothing there is worth keeping
        train(stage, resume=started, overwrite=not started)
        setup_logger(cfg.OUTPUT_DIR)
    else:
        logger.info("Stage 1: reusing the source model in %s", cache)
    weights = cache / "last.pth"
    num_classes = int(read_checkpoint_meta(weights)["num_classes"])
    model = build_model(cfg, num_classes).to(device)
    load_model_weights(model, weights)
    return model, {"cache": str(cache), "reused": reused, "num_classes": num_classes}


def initial_model(cfg: Config, num_classes: int, device: torch.device
                  ) -> Tuple[nn.Module, Dict[str, Any]]:
    """The one-stage start: the model of ``cfg`` with its initial weights (the pretrained
    backbone, a head for the ``num_classes`` source identities, drawn from ``SEED``) on
    ``device``, and facts about it for ``results.json``."""
    backbone = cfg.MODEL.BACKBONE
    logger.info("One stage: %s from %s, a fresh head for %d source identities", backbone.NAME,
                backbone.PRETRAIN_NAME or backbone.PRETRAIN_PATH, num_classes)
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    model = build_model(cfg, num_classes).to(device)
    return model, {"weights": backbone.PRETRAIN_NAME or backbone.PRETRAIN_PATH,
                   "num_classes": num_classes}


def check_one_stage(cfg: Config, method: AdaptMethod) -> None:
    """A method that trains in one stage starts from pretrained backbone weights (its frozen
    layers keep them): ``MODEL.BACKBONE.PRETRAIN`` off is a :class:`ConfigError`, an absent
    weight file a :class:`FileNotFoundError` naming it, before anything is written."""
    if method.needs_source_model:
        return
    key = f"ADAPT.{cfg.ADAPT.METHOD.upper()}.PROTOCOL"
    if not cfg.MODEL.BACKBONE.PRETRAIN:
        raise ConfigError(
            f"{key} one_stage starts from pretrained backbone weights, but "
            "MODEL.BACKBONE.PRETRAIN is False: turn it on with PRETRAIN_PATH or PRETRAIN_NAME, "
            f"or start from a source model with {key} two_stage")
    path = Path(pretrained_file(cfg.MODEL.BACKBONE))
    if not path.is_file():
        raise FileNotFoundError(f"MODEL.BACKBONE.PRETRAIN_PATH: {path} not found ({key} "
                                "one_stage starts from these weights)")


def build_start_model(cfg: Config, device: torch.device) -> Tuple[nn.Module, Dict[str, Any]]:
    """Without a source: the model as ``cfg`` builds it (``MODEL.WEIGHTS`` loaded non-strictly,
    else the backbone's pre-training, else random weights from ``SEED``), on ``device``. Its
    source classifier is never trained; it has ``MODEL.HEADS.NUM_CLASSES`` outputs (1 when 0).
    Returns the model and facts about where it came from."""
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    num_classes = cfg.MODEL.HEADS.NUM_CLASSES or 1
    model = build_model(cfg, num_classes).to(device)
    backbone = cfg.MODEL.BACKBONE
    return model, {"weights": cfg.MODEL.WEIGHTS or None,
                   "backbone_pretrain": (backbone.PRETRAIN_PATH or True) if backbone.PRETRAIN
                   else None, "num_classes": num_classes}


def start_model(cfg: Config, method: AdaptMethod, source_data: Optional[ReIDDataset],
                device: torch.device) -> Tuple[nn.Module, Dict[str, Any]]:
    """The model stage 2 of ``cfg`` starts from and facts about it: without a source the
    :func:`build_start_model`, for a method that needs it the stage-1 source model
    (:func:`train_or_load_source`), else the :func:`initial_model`."""
    if source_data is None:
        return build_start_model(cfg, device)
    if method.needs_source_model:
        return train_or_load_source(cfg, device)
    return initial_model(cfg, source_data.num_train_pids, device)


def other_seed_start_models(cfg: Config, method: AdaptMethod,
                            source_data: Optional[ReIDDataset], device: torch.device
                            ) -> Tuple[Dict[int, nn.Module], List[Dict[str, Any]]]:
    """The start model of each other ``SEED`` the method asks for
    (:meth:`AdaptMethod.start_model_seeds`): :func:`start_model` of ``cfg`` with that ``SEED``
    (so a source model is cached under that seed's key, trained once, reused by every run
    that needs it), prepared by the method; and facts about each (``seed`` and
    :func:`start_model`'s)."""
    models: Dict[int, nn.Module] = {}
    infos: List[Dict[str, Any]] = []
    for seed in method.start_model_seeds(cfg.SEED):
        seeded = copy.deepcopy(cfg)
        seeded.SEED = seed
        logger.info("The start model of SEED %d, which the method asks for", seed)
        model, info = start_model(seeded, method, source_data, device)
        method.prepare_model(model)
        models[seed] = model
        infos.append({"seed": seed, **info})
    return models, infos


def stage_settings(stage: Config) -> StageSettings:
    """The shared settings a method gets, from the stage-2 config."""
    return StageSettings(
        batch_size=stage.SOLVER.IMS_PER_BATCH, test_batch_size=stage.TEST.IMS_PER_BATCH,
        num_instances=stage.DATALOADER.NUM_INSTANCE, num_workers=stage.DATALOADER.NUM_WORKERS,
        seed=stage.SEED, flip=stage.TEST.FLIP, neck_feat=stage.MODEL.HEADS.NECK_FEAT,
        train_transform=build_transforms_from_config(stage, is_train=True),
        test_transform=build_transforms_from_config(stage, is_train=False),
        model_losses=build_loss_fn(stage))


def dataset_options(datasets: Any) -> List[str]:
    """``KEY VALUE`` pairs of the DATASETS keys that locate a dataset (root, synthetic scale,
    seed and version) set away from their defaults, for command lines that must find the same
    data."""
    default = type(datasets)()
    return [item for key in ("ROOT", "SYNTH_SCALE", "SYNTH_SEED", "SYNTH_VERSION")
            if getattr(datasets, key) != getattr(default, key)
            for item in (f"DATASETS.{key}", str(getattr(datasets, key)))]


def run_adaptation(cfg: Config, resume: bool = False, overwrite: bool = False
                   ) -> Dict[str, Any]:
    """Both stages for ``cfg``; writes and returns ``OUTPUT_DIR/results.json`` and logs a
    summary (:func:`adaptation_summary`). Nothing is written to ``OUTPUT_DIR`` before it
    (:func:`check_output_dir`), the method, the target dataset and the camera-style images the
    method needs have been checked. The method's inputs are linked under
    ``OUTPUT_DIR/method_inputs`` for the run (:func:`method_inputs`) and removed after it."""
    setup_logger()  # set-up records wait for the folder (a previous run's log gets none)
    check_output_dir(cfg, resume, overwrite)
    method = build_method(cfg)
    check_one_stage(cfg, method)
    if cfg.ADAPT.SOURCE == NO_SOURCE and method.uses_source:
        raise ConfigError(f"ADAPT.METHOD {cfg.ADAPT.METHOD} trains on labelled source images: "
                          f"it cannot run with ADAPT.SOURCE {NO_SOURCE}")
    labelled_target = build_dataset_from_config(cfg, cfg.ADAPT.TARGET)
    camstyle = None
    if method.uses_camstyle:  # checked before stage 1: a missing folder fails at once
        camstyle = check_camstyle_dir(labelled_target.root, labelled_target.train,
                                          labelled_target.num_cameras, cfg.ADAPT.TARGET,
                                          dataset_options(cfg.DATASETS))
    output_dir = default_setup(cfg, resume, overwrite)
    inputs_dir = output_dir / "method_inputs"
    try:
        results = _run_stages(cfg, method, labelled_target, camstyle, output_dir,
                              inputs_dir, resume)
    finally:
        if is_main_process():
            shutil.rmtree(inputs_dir, ignore_errors=True)
    logger.info("%s", adaptation_summary(results, output_dir))
    return results


def _run_stages(cfg: Config, method: AdaptMethod, labelled_target: ReIDDataset,
                camstyle: Optional[CamStyleFolder], output_dir: Path, inputs_dir: Path,
                resume: bool
                ) -> Dict[str, Any]:
    start = time.perf_counter()
    device = resolve_device(cfg.MODEL.DEVICE)
    source_name, target_name = cfg.ADAPT.SOURCE, cfg.ADAPT.TARGET
    if camstyle is not None:
        logger.info("Camera-style images of %s: %s (%s)", target_name, camstyle.path,
                    camstyle.naming)

    stage_cfg = adapt_stage_config(cfg)
    source_data = (None if source_name == NO_SOURCE
                   else build_dataset_from_config(cfg, source_name))
    tested = (target_name, source_name)
    model, source_info = start_model(cfg, method, source_data, device)
    if source_data is None:
        start_name, what, tested = "start", "Start model", (target_name,)
        source_info["note"] = "no source: the start model's target metrics, not direct transfer"
    elif method.needs_source_model:
        start_name, what = "source", "Stage 1 (source model)"
    else:
        start_name, what = "initial", "Initial model (no training)"
    seed_models, seed_infos = other_seed_start_models(cfg, method, source_data, device)
    if seed_infos:
        source_info["seed_models"] = seed_infos
    before = build_evaluator(stage_cfg if source_data is None else cfg, model, tested)()
    for name, values in before.items():
        logger.info("%s on %s: %s", what, name,
                    ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    stages: List[Dict[str, Any]] = [dict(name=start_name, metrics=before, **source_info)]
    final = {target_name: before[target_name]}

    # Stage 2 starts from the same random state whether stage 1 was trained or reused.
    seed_everything(cfg.SEED, cfg.CUDNN_DETERMINISTIC)
    source, target, identities = method_inputs(source_data, labelled_target, inputs_dir,
                                               cfg.SEED, camstyle)
    ctx = AdaptContext(model, source, target, stage_settings(stage_cfg), device, output_dir,
                       seed_models)
    method.prepare_model(model)
    step = method.build_step(ctx)
    if step is not None:
        curves = EpochCurvesHook()
        quality = LabelQualityHook(method.pseudo_labels, identities)
        iters = stage_cfg.SOLVER.ITERS_PER_EPOCH or len(step)
        method_hooks = [GuardedHook(hook) for hook in method.hooks(ctx)]
        trainer, checkpointer = build_trainer(
            stage_cfg, model, step, iters, build_evaluator(stage_cfg, model, (target_name,)),
            extra_hooks=[*method_hooks, quality, curves], keep_best=False,
            meta={"num_classes": source_info["num_classes"], "method": cfg.ADAPT.METHOD,
                  "training_modules": list(method.training_modules)})
        resume_or_start(trainer, checkpointer, resume)
        trainer.train()
        final = trainer.metrics[max(trainer.metrics)]
        epochs = sorted(set(curves.curves) | set(trainer.metrics))
        stages.append({"name": cfg.ADAPT.METHOD, "metrics": final, "epochs": trainer.max_epoch,
                       "curves": [dict(epoch=e, **curves.curves.get(e, {}),
                                       metrics=trainer.metrics.get(e, {})) for e in epochs],
                       **({"label_quality": quality.rounds} if quality.rounds else {}),
                       **method.report()})

    results = build_results("adapt", cfg.ADAPT.METHOD, source_name, target_name, cfg.SEED,
                            final, time.perf_counter() - start, stages)
    path = write_results(output_dir / "results.json", results)
    logger.info("Results written to %s", path)
    return results
