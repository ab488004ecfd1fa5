"""Cluster Contrast (Dai et al.): every epoch the target features are clustered (ADAPT.CLUSTER,
outliers dropped), a cluster-level memory is initialised from the cluster means, and the model
trains on PK batches over the pseudo-labels with the memory's contrastive loss; after each
optimiser step the batch's centroids move by momentum (ADAPT.CC.MODE ``mean`` or
``hardest``). The source model (or any start) only provides the initial features.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from uda_reid.adapt.base import AdaptContext, AdaptMethod
from uda_reid.adapt.cluster_memory import ClusterMemory
from uda_reid.adapt.methods.cluster import FEATURE_KEYS, target_feature_loader
from uda_reid.adapt.pseudo_labels import PseudoLabeler, cluster_centroids
from uda_reid.adapt.registry import METHODS
from uda_reid.config.sections.adapt import method_options
from uda_reid.data.loaders import build_batch_loader, per_rank_batch_size
from uda_reid.engine.trainer import BatchStream, TrainStep
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.computer import over_branches
from uda_reid.models.forward import forward_model

logger = logging.getLogger(__name__)


@method_options("CC")
class ClusterContrastConfig:
    # Cluster Contrast (alibaba/cluster-contrast-reid); clustering is ADAPT.CLUSTER's.
    TEMPERATURE: float = 0.05  # examples/cluster_contrast_train_usl.py --temp
    MOMENTUM: float = 0.1  # centroid momentum (README.md commands; the script's default is 0.2)
    MODE: str = "mean"  # mean (cm.py CM) | hardest (cm.py CM_Hard, --use-hard)
    NUM_INSTANCES: int = 16  # images per pseudo-identity in a PK batch (README.md commands)


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """Mean cosine similarity over the pairs of distinct rows of ``features`` (N, D), N >= 2:
    ``(|sum_i x_i|^2 - N) / (N (N - 1))`` for the l2-normalised rows x_i."""
    x = F.normalize(features.double(), dim=1)
    total = x.sum(dim=0)
    n = len(x)
    return float((total @ total - n) / (n * (n - 1)))


class ClusterContrastStep(TrainStep):
    """One iteration: a PK batch of pseudo-labelled target images, the memory loss; the
    round (``begin_epoch``) clusters and re-initialises the memory. ``len`` = target images //
    batch size. A degenerate clustering leaves the round idle (no forward, no update)."""

    def __init__(self, model: nn.Module, memory: ClusterMemory, labeler: PseudoLabeler, train_images: Dataset,
                 feature_loader: Iterable, batch_size: int, num_instances: int,
                 feature_key: str = "embedding", flip: bool = False, num_workers: int = 0,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"the batch size {batch_size} must be a multiple of "
                             f"ADAPT.CC.NUM_INSTANCES={num_instances}")
        self.model = model  # whose features are clustered
        self.memory = memory.to(device)
        self.labeler = labeler
        self.train_images = train_images
        self.feature_loader = feature_loader
        self.batch_size, self.num_instances = batch_size, num_instances
        self.feature_key = feature_key
        self.flip, self.num_workers, self.seed = flip, num_workers, seed
        self.device = torch.device(device)
        self.labels = np.full(len(train_images), -1, dtype=np.int64)
        self.rounds: List[Dict[str, Any]] = []
        self.target: Optional[BatchStream] = None
        self._pending: Optional[tuple] = None

    def __len__(self) -> int:
        return max(1, len(self.train_images) // self.batch_size)

    def begin_epoch(self, epoch: int) -> None:
        start = time.perf_counter()
        features = extract_features(self.model, self.feature_loader, self.flip,
                                    self.device)[0]
        (result,) = self.labeler(features)
        record: Dict[str, Any] = {"epoch": epoch + 1, "num_clusters": result.num_clusters,
                                  "num_outliers": result.num_outliers,
                                  "degenerate": result.degenerate,
                                  "mean_cosine": mean_pairwise_cosine(features)}
        if float(features.min()) >= 0:
            logger.warning(
                "Round %d: every feature is non-negative (e.g. pool5 after a ReLU), mean cosine "
                "%.3f between images: at temperature %g the memory loss first spreads them "
                "apart. A centred feature (a BNNeck head with MODEL.HEADS.NECK_FEAT after, as "
                "the official code) avoids it.", epoch + 1, record["mean_cosine"],
                self.memory.temperature)
        self.target = None
        if result.degenerate is None:
            self.labels = np.asarray(result.labels, dtype=np.int64)
            # the mean of the l2-normalised features, as the official code's (its model
            # returns normalised features in eval mode)
            self.memory.reset(torch.from_numpy(cluster_centroids(F.normalize(features, dim=1),
                                                                 self.labels)))
            try:
                self.target = BatchStream(build_batch_loader(
                    self.train_images, self.labels.tolist(), self.batch_size,
                    self.num_instances, self.num_workers, self.seed + epoch), self.device)
            except ValueError as err:
                record["degenerate"] = f"no PK batches: {err}"
        if self.target is None:
            self.labels = np.full(len(self.train_images), -1, dtype=np.int64)
            logger.warning("Round %d: DEGENERATE clustering (%s): no update this round",
                           epoch + 1, record["degenerate"])
        logger.info("Round %d: %d clusters, %d outliers", epoch + 1, result.num_clusters,
                    result.num_outliers)
        record["idle"] = self.target is None
        record["seconds"] = time.perf_counter() - start
        self.rounds.append(record)

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        if self.target is None:
            return {}
        batch = self.target.next()
        labels = torch.as_tensor(self.labels[batch["indexes"].cpu().numpy()],
                                 device=self.device)
        outputs = forward_model(model, {"images": batch["images"], "camids": batch["camids"]})
        feats = outputs[self.feature_key]
        loss = over_branches(feats, lambda x: self.memory(x, labels))
        self._pending = ((feats if isinstance(feats, torch.Tensor) else feats[0]).detach(),
                         labels)
        return {"loss_cluster_contrast": loss}

    def after_update(self, model: nn.Module) -> None:
        if self._pending is not None:
            self.memory.update(*self._pending)
            self._pending = None

    def scalars(self) -> Dict[str, float]:
        if not self.rounds:
            return {}
        last = self.rounds[-1]
        return {"pseudo0_num_clusters": float(last["num_clusters"]),
                "pseudo0_num_outliers": float(last["num_outliers"])}

    def state_dict(self) -> Dict[str, Any]:
        return {"labels": torch.from_numpy(self.labels.copy()), "rounds": self.rounds,
                "memory": self.memory.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.labels = torch.as_tensor(state["labels"]).numpy().astype(np.int64)
        self.rounds = list(state["rounds"])
        self.memory.load_state_dict(state["memory"])


@METHODS.register("cluster_contrast", aliases=("cc",))
class ClusterContrast(AdaptMethod):
    """Cluster Contrast over ADAPT.CLUSTER's first granularity with ADAPT.CC's memory."""

    uses_source = False  # target images only: runs after a source model or without one

    def __init__(self, labeler: PseudoLabeler, temperature: float = 0.05, momentum: float = 0.1,
                 mode: str = "mean", num_instances: int = 16) -> None:
        self.labeler = dataclasses.replace(labeler, granularities=labeler.granularities[:1])
        self.temperature, self.momentum, self.mode = temperature, momentum, mode
        self.num_instances = num_instances
        ClusterMemory(1, temperature, momentum, mode)  # validates the options early
        self.step: Optional[ClusterContrastStep] = None

    @classmethod
    def from_config(cls, adapt) -> "ClusterContrast":
        c = adapt.CC
        return cls(PseudoLabeler.from_config(adapt.CLUSTER), c.TEMPERATURE, c.MOMENTUM, c.MODE,
                   c.NUM_INSTANCES)

    def build_step(self, ctx: AdaptContext) -> ClusterContrastStep:
        s = ctx.settings
        feature_loader, dim = target_feature_loader(ctx)
        memory = ClusterMemory(dim, self.temperature, self.momentum, self.mode)
        self.step = ClusterContrastStep(
            ctx.model, memory, self.labeler, ctx.target.dataset(s.train_transform), feature_loader,
            per_rank_batch_size(s.batch_size, "ADAPT.SOLVER.IMS_PER_BATCH"), self.num_instances,
            FEATURE_KEYS[s.neck_feat], s.flip, s.num_workers, s.seed, ctx.device)
        return self.step

    def pseudo_labels(self) -> Optional[np.ndarray]:
        return None if self.step is None else self.step.labels[None].copy()

    def report(self) -> Dict[str, Any]:
        rounds = self.step.rounds if self.step is not None else []
        return {"rounds": rounds, "idle_rounds": sum(bool(r["idle"]) for r in rounds)}
