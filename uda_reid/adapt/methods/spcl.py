"""Self-paced Contrastive Learning (SpCL; Ge et al., NeurIPS 2020; official code yxgeee/SpCL,
examples/spcl_train_uda.py, spcl/trainers.py SpCLTrainer_UDA).

A hybrid memory (:mod:`uda_reid.adapt.hybrid_memory`) holds the source class centroids and
every target image's feature, both taken from the starting model before the first epoch. Every
epoch (one *round*) the memory's target features - not freshly extracted ones - are clustered
(ADAPT.CLUSTER: DBSCAN on the k-reciprocal Jaccard distance) at eps and, for the self-paced
refinement (:mod:`uda_reid.adapt.self_paced`), at eps -/+ ADAPT.SPCL.EPS_GAP; the reliable
clusters group their slots, every other target image is an un-clustered instance. Each
iteration forwards a source batch of identities and a target batch (groups of NUM_INSTANCES
images of a cluster, un-clustered images alone; with ADAPT.SPCL.CAMERA_AWARE_SAMPLING, as the
official RandomMultipleGallerySampler, each identity's or cluster's images after a random
anchor come from other cameras than the anchor's when it has any) in one pass, through
domain-specific BatchNorm as the official code does (ADAPT.SPCL.DSBN; source rows first), and
sums the unified contrastive losses of both; after the optimiser step the memory moves the
batch's slots towards its features.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uda_reid.adapt.base import AdaptContext, AdaptMethod
from uda_reid.adapt.clustering import DBSCANBackend, apply_outlier_policy
from uda_reid.adapt.hybrid_memory import HybridMemory
from uda_reid.adapt.methods.cluster import (FEATURE_KEYS, RoundTensorBoardHook,
                                            target_feature_loader)
from uda_reid.adapt.pseudo_labels import PseudoLabeler, cluster_centroids
from uda_reid.adapt.registry import METHODS
from uda_reid.adapt.self_paced import self_paced_labels
from uda_reid.config.sections.adapt import method_options
from uda_reid.data.loaders import build_batch_loader, collate, per_rank_batch_size
from uda_reid.data.samplers import GroupStreamBatchSampler, ShardSampler
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import BatchStream, TrainStep
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.computer import over_branches
from uda_reid.models.domain_bn import (convert_domain_batchnorm, domain_sections,
                                       other_domain_modules)
from uda_reid.models.forward import forward_model

logger = logging.getLogger(__name__)


# Defaults from the official code (yxgeee/SpCL ``examples/spcl_train_uda.py`` argparse defaults,
# ``spcl/models/hm.py``). The clustering (Jaccard k1/k2, DBSCAN eps and min_samples) is
# ADAPT.CLUSTER's; SpCL clusters at its first EPS and at that eps -/+ EPS_GAP.
@method_options("SPCL")
class SpCLConfig:
    TEMPERATURE: float = 0.05  # --temp: logits = similarity / temperature
    MOMENTUM: float = 0.2  # --momentum: slot <- normalise(m slot + (1 - m) feature)
    # --eps-gap: the tighter and looser clusterings run at eps - EPS_GAP and eps + EPS_GAP
    EPS_GAP: float = 0.02
    # Self-paced refinement (independence + compactness); False: every DBSCAN cluster is used
    # and only DBSCAN's outliers are un-clustered instances.
    SELF_PACED: bool = True
    # A cluster is independent when its IoU with its cluster at the looser eps reaches a
    # threshold fixed in the first round so that this fraction of the clusters (of two or more
    # images) passes (the official code hard-codes 0.9).
    INDEP_QUANTILE: float = 0.9
    NUM_INSTANCES: int = 4  # --num-instances: images per pseudo-identity / source identity
    SOURCE_IMS_PER_BATCH: int = 0  # 0: ADAPT.SOLVER.IMS_PER_BATCH (official: -b 64 for both)
    # Domain-specific BatchNorm over the joint source + target forward pass (the official
    # create_model converts every BatchNorm with convert_dsbn); False: one shared BatchNorm.
    DSBN: bool = True
    # Source and target batches take each identity's / cluster's images after a random anchor
    # from other cameras than the anchor's where it has any (RandomMultipleGallerySampler of
    # spcl/utils/data/sampler.py, the official sampler of both loaders; source batches are then
    # drawn as the target's, identity groups in one stream); False: any NUM_INSTANCES of its
    # images (PK source batches).
    CAMERA_AWARE_SAMPLING: bool = True


def group_stream_loader(images: Dataset, labels: Sequence[int], batch_size: int,
                        num_instances: int, seed: int, camids: Optional[Sequence[int]] = None,
                        num_workers: int = 0) -> DataLoader:
    """Batches of ``images`` from a :class:`GroupStreamBatchSampler` over ``labels`` (N,),
    preferring other cameras within a group when ``camids`` (N,) are given."""
    return DataLoader(images, batch_sampler=GroupStreamBatchSampler(
        labels, batch_size, num_instances, seed, camids=camids),
        num_workers=num_workers, collate_fn=collate)


class SpCLStep(TrainStep):
    """One iteration: a source and a target batch, the hybrid memory's losses; the round
    (``begin_epoch``) initialises the memory once, then regroups its target slots.

    labeler: the clustering at ``(eps,)`` or, with ``self_paced``, ``(eps - gap, eps,
    eps + gap)``; source_loader: labelled batches of identities; target_images: the target
    training set (train transform); source/target_feature_loader: both training sets with the
    test transform in slot order (to initialise the memory); target_camids: (N,) the target
    images' cameras for camera-aware target batches, ``None``: any images of a cluster.
    """

    def __init__(self, model: nn.Module, memory: HybridMemory, labeler: PseudoLabeler,
                 source_loader: Iterable, target_images: Dataset,
                 source_feature_loader: Iterable, source_pids: Sequence[int],
                 target_feature_loader: Iterable, batch_size: int, num_instances: int,
                 feature_key: str = "embedding", self_paced: bool = True,
                 indep_quantile: float = 0.9, domain_bn: bool = True, flip: bool = False,
                 num_workers: int = 0, seed: int = 0, device: torch.device | str = "cpu",
                 target_camids: Optional[Sequence[int]] = None) -> None:
        if len(labeler.granularities) != (3 if self_paced else 1):
            raise ValueError("the labeler must cluster at (eps - gap, eps, eps + gap) with "
                             "self-paced refinement, else at eps alone")
        self.model = model
        self.memory = memory.to(device)
        self.labeler = labeler
        self.source = BatchStream(source_loader, device)
        self.target_images = target_images
        self.source_feature_loader = source_feature_loader
        self.source_pids = np.asarray(source_pids, dtype=np.int64)
        self.target_feature_loader = target_feature_loader
        self.batch_size, self.num_instances = batch_size, num_instances
        self.feature_key = feature_key
        self.self_paced, self.indep_quantile = self_paced, indep_quantile
        self.domain_bn = domain_bn
        self.flip, self.num_workers, self.seed = flip, num_workers, seed
        self.device = torch.device(device)
        self.target_camids = target_camids
        self.initialised = False
        self.threshold: Optional[float] = None
        self.labels = np.full(memory.num_target, -1, dtype=np.int64)
        self.rounds: List[Dict[str, Any]] = []
        self.target: Optional[BatchStream] = None
        self._pending: Optional[tuple] = None

    def __len__(self) -> int:
        return max(1, len(self.target_images) // self.batch_size)

    def initialise_memory(self) -> None:
        """Source class centroids (mean l2-normalised feature per class) and target features
        of the current model."""
        source = extract_features(self.model, self.source_feature_loader, self.flip,
                                  self.device)[0]
        target = extract_features(self.model, self.target_feature_loader, self.flip,
                                  self.device)[0]
        centroids = cluster_centroids(F.normalize(source, dim=1), self.source_pids)
        self.memory.initialise(torch.from_numpy(centroids), target)
        self.initialised = True

    def begin_epoch(self, epoch: int) -> None:
        start = time.perf_counter()
        if not self.initialised:
            self.initialise_memory()
        results = self.labeler(self.memory.target_features)
        main = results[len(results) // 2]
        record: Dict[str, Any] = {"epoch": epoch + 1, "dbscan_clusters": main.num_clusters,
                                  "dbscan_outliers": main.num_outliers,
                                  "degenerate": main.degenerate}
        if self.self_paced:
            tight, _, loose = results
            refined = self_paced_labels(main.labels, tight.labels, loose.labels,
                                        self.threshold, self.indep_quantile)
            self.threshold = refined.threshold
            self.labels = refined.labels
            record.update(indep_threshold=refined.threshold,
                          rejected_clusters=refined.rejected_clusters,
                          dropped_members=refined.dropped_members)
        else:
            self.labels = np.asarray(main.labels, dtype=np.int64)
        if main.degenerate is not None:
            logger.warning("Round %d: DEGENERATE clustering (%s); training goes on with its "
                           "clusters and un-clustered instances", epoch + 1, main.degenerate)
        self.memory.set_target_labels(self.labels)
        record["num_clusters"] = int(self.labels.max(initial=-1)) + 1
        record["num_unclustered"] = int((self.labels < 0).sum())
        self.target = BatchStream(group_stream_loader(
            self.target_images, apply_outlier_policy(self.labels, "singleton"),
            self.batch_size, self.num_instances, self.seed + epoch, self.target_camids,
            self.num_workers), self.device)
        self.source.begin_epoch(epoch)
        logger.info("Round %d: %d clusters, %d un-clustered instances (DBSCAN: %d clusters, "
                    "%d outliers)", epoch + 1, record["num_clusters"],
                    record["num_unclustered"], main.num_clusters, main.num_outliers)
        record["seconds"] = time.perf_counter() - start
        self.rounds.append(record)

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        if self.target is None:
            raise RuntimeError("SpCLStep.run() before begin_epoch()")
        source, target = self.source.next(), self.target.next()
        b = len(source["images"])
        sections = (domain_sections(model, [("source", b), ("target", len(target["images"]))])
                    if self.domain_bn else contextlib.nullcontext())
        with sections:
            outputs = forward_model(model, {
                "images": torch.cat([source["images"], target["images"]]),
                "camids": torch.cat([source["camids"], target["camids"]])})
        slots = torch.cat([source["pids"], target["indexes"] + self.memory.num_source])
        feats = outputs[self.feature_key]
        losses = {"loss_source_memory": over_branches(feats, lambda x: self.memory(x[:b],
                                                                                   slots[:b])),
                  "loss_target_memory": over_branches(feats, lambda x: self.memory(x[b:],
                                                                                   slots[b:]))}
        self._pending = ((feats if isinstance(feats, torch.Tensor) else feats[0]).detach(), slots)
        return losses

    def after_update(self, model: nn.Module) -> None:
        if self._pending is not None:
            self.memory.update(*self._pending)
            self._pending = None

    def scalars(self) -> Dict[str, float]:
        """The last round's counts of clusters and un-clustered instances."""
        last = self.rounds[-1] if self.rounds else {}
        return {f"pseudo0_{key}": float(last[key]) for key in ("num_clusters", "num_unclustered")
                if key in last}

    def state_dict(self) -> Dict[str, Any]:
        return {"memory": self.memory.state_dict(), "initialised": self.initialised,
                "threshold": self.threshold, "labels": torch.from_numpy(self.labels.copy()),
                "rounds": self.rounds, "source": self.source.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.initialised = bool(state["initialised"])
        self.threshold = state["threshold"]
        self.labels = torch.as_tensor(state["labels"]).numpy().astype(np.int64)
        self.rounds = list(state["rounds"])
        self.source.load_state_dict(state["source"])


@METHODS.register("spcl")
class SpCL(AdaptMethod):
    """SpCL over ADAPT.CLUSTER's first eps (DBSCAN) with ADAPT.SPCL's memory and refinement."""

    def __init__(self, labeler: PseudoLabeler, temperature: float = 0.05, momentum: float = 0.2,
                 eps_gap: float = 0.02, self_paced: bool = True, indep_quantile: float = 0.9,
                 num_instances: int = 4, source_batch_size: int = 0,
                 domain_bn: bool = True, camera_aware: bool = True) -> None:
        if not isinstance(labeler.backend, DBSCANBackend):
            raise ValueError("spcl clusters with DBSCAN: set ADAPT.CLUSTER.BACKEND dbscan")
        if labeler.outliers != "drop":
            raise ValueError("spcl keeps DBSCAN's outliers as un-clustered instances itself: "
                             f"set ADAPT.CLUSTER.OUTLIERS drop, got {labeler.outliers!r}")
        eps = labeler.granularities[0]
        if self_paced and not 0.0 < eps - eps_gap < eps + eps_gap < 1.0:
            raise ValueError(f"ADAPT.SPCL.EPS_GAP={eps_gap} around ADAPT.CLUSTER.EPS {eps} "
                             "must keep both eps within (0, 1)")
        if not 0.0 <= indep_quantile <= 1.0:
            raise ValueError(f"ADAPT.SPCL.INDEP_QUANTILE must lie in [0, 1], got "
                             f"{indep_quantile}")
        if num_instances < 1:
            raise ValueError(f"ADAPT.SPCL.NUM_INSTANCES must be >= 1, got {num_instances}")
        granularities = (eps - eps_gap, eps, eps + eps_gap) if self_paced else (eps,)
        self.labeler = dataclasses.replace(labeler, granularities=granularities)
        self.temperature, self.momentum = temperature, momentum
        HybridMemory(1, 0, 0, temperature, momentum)  # validates the options early
        self.self_paced, self.indep_quantile = self_paced, indep_quantile
        self.num_instances, self.source_batch_size = num_instances, source_batch_size
        self.domain_bn = domain_bn
        self.camera_aware = camera_aware
        self.step: Optional[SpCLStep] = None

    @classmethod
    def from_config(cls, adapt) -> "SpCL":
        c = adapt.SPCL
        return cls(PseudoLabeler.from_config(adapt.CLUSTER), c.TEMPERATURE, c.MOMENTUM,
                   c.EPS_GAP, c.SELF_PACED, c.INDEP_QUANTILE, c.NUM_INSTANCES,
                   c.SOURCE_IMS_PER_BATCH, c.DSBN, c.CAMERA_AWARE_SAMPLING)

    def prepare_model(self, model: nn.Module) -> None:
        """With DSBN every BatchNorm keeps target (main, exported) and source statistics."""
        if self.domain_bn:
            count = convert_domain_batchnorm(model, "target", ("source",))
            self.training_modules = other_domain_modules(model)
            logger.info("DSBN: %d BatchNorm layers now keep target and source statistics", count)

    def build_step(self, ctx: AdaptContext) -> SpCLStep:
        s = ctx.settings
        target_loader, dim = target_feature_loader(ctx)
        source_loader = DataLoader(ctx.source.dataset(s.test_transform),
                                   batch_size=s.test_batch_size,
                                   sampler=ShardSampler(len(ctx.source)),
                                   num_workers=s.num_workers, collate_fn=collate)
        batch_size = per_rank_batch_size(s.batch_size, "ADAPT.SOLVER.IMS_PER_BATCH")
        source_batch_size = (per_rank_batch_size(self.source_batch_size,
                                                 "ADAPT.SPCL.SOURCE_IMS_PER_BATCH")
                             if self.source_batch_size else batch_size)
        memory = HybridMemory(dim, ctx.source.num_classes, len(ctx.target), self.temperature,
                              self.momentum)
        source_images = ctx.source.dataset(s.train_transform)
        if self.camera_aware:
            source_batches = group_stream_loader(source_images, ctx.source.pids,
                                                 source_batch_size, self.num_instances, s.seed,
                                                 ctx.source.camids, s.num_workers)
        else:
            source_batches = build_batch_loader(source_images, ctx.source.pids,
                                                source_batch_size, self.num_instances,
                                                s.num_workers, s.seed)
        self.step = SpCLStep(
            ctx.model, memory, self.labeler, source_batches,
            ctx.target.dataset(s.train_transform), source_loader, ctx.source.pids,
            target_loader, batch_size, self.num_instances, FEATURE_KEYS[s.neck_feat],
            self.self_paced, self.indep_quantile, self.domain_bn, s.flip, s.num_workers, s.seed,
            ctx.device, ctx.target.camids if self.camera_aware else None)
        return self.step

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        if self.step is None:
            raise RuntimeError("hooks() needs build_step() first")
        return [RoundTensorBoardHook(self.step)]

    def pseudo_labels(self) -> Optional[np.ndarray]:
        return None if self.step is None else self.step.labels[None].copy()

    def report(self) -> Dict[str, Any]:
        rounds = self.step.rounds if self.step is not None else []
        return {"rounds": rounds, "degenerate_rounds": sum(bool(r["degenerate"]) for r in rounds)}
