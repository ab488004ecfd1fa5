"""Clustering pseudo-labels (the strong clustering baseline) and its multi-granularity form.

Every epoch (one *round*) the step extracts the target training features with the current
model, clusters them at each granularity of ADAPT.CLUSTER (k-reciprocal Jaccard distance, one
backend, an outlier policy), re-initialises one classifier per granularity from that
granularity's l2-normalised cluster centroids, and trains on PK batches drawn over the labels
of one granularity (``TRIPLET_GRANULARITY``) with the mean label-smoothed CE over the
granularities plus batch-hard triplet on that granularity, optionally with a labelled source
batch in the same forward pass ("mixture"). ``cluster`` is this with one granularity, ``mlt``
(methods/mlt.py) with all of them.

A degenerate granularity (every sample an outlier, or one single cluster) is logged; it keeps
its previous round's labels and classifier, or, in the first round, sits out (no CE; without
usable labels for the sampler the target batches are drawn at random and only the losses that
still have labels are used). An iteration with nothing to train on (no pseudo-label in the
batch and no source batch) neither runs the model nor steps the optimiser, so an *idle* round
(no labels at any granularity) leaves every weight and BatchNorm statistic as it was; the
report counts degenerate and idle rounds.

The labels each epoch trains on are reported (:meth:`ClusterAdaptation.pseudo_labels`); their
quality against the hidden identities is the pipeline's monitoring, out of the method's reach.

Options (ADAPT.PSEUDO_LABEL): re-clustering every ``RECLUSTER_PERIOD`` epochs; label transport
(``TRANSPORT``: the epochs in between re-assign each granularity's labels by Sinkhorn-Knopp
from the classifier's predictions, or each batch is re-assigned among its classes); domain-
specific BatchNorm for the mixed batch (``DSBN``); a mean teacher (``MEAN_TEACHER``) whose
features and classifiers give the pseudo-labels and which is evaluated and checkpointed.
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
from uda_reid.adapt.clustering import ClusterResult
from uda_reid.adapt.mean_teacher import MeanTeacher, MeanTeacherHook
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_labels import PseudoLabeler, cluster_centroids
from uda_reid.adapt.registry import METHODS
from uda_reid.adapt.pseudo_label_options import (BatchOptions, MixtureOptions,
                                                 PseudoLabelLosses, RoundOptions, TeacherOptions)
from uda_reid.adapt.transport import transport_batch_labels, transport_epoch_labels
from uda_reid.data.loaders import (build_batch_loader, build_shuffled_loader, collate,
                                   per_rank_batch_size)
from uda_reid.data.samplers import ShardSampler
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import BatchStream, TrainStep
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.computer import over_branches
from uda_reid.losses.functional import cross_entropy_smooth, triplet_loss
from uda_reid.models.domain_bn import (convert_domain_batchnorm, domain_sections,
                                       other_domain_modules)
from uda_reid.models.forward import forward_model
from uda_reid.utils.distributed import any_rank, dist_rank_and_world_size

logger = logging.getLogger(__name__)

# The training output the classifiers read: the one the model retrieves with (NECK_FEAT).
FEATURE_KEYS = {"after": "embedding", "before": "features"}
# The model's (and its teacher's) sub-module holding the pseudo-label classifiers.
CLASSIFIERS = "pseudo_classifiers"


def update_round_labels(results: Sequence[ClusterResult], previous: np.ndarray,
                        features: torch.Tensor, classifiers: PseudoClassifiers
                        ) -> tuple[np.ndarray, List[str]]:
    """Labels (H, N) of a round and what happened to each granularity.

    A usable result replaces the granularity's labels and re-initialises its classifier from
    the l2-normalised centroids of ``features`` (N, D); a degenerate one keeps ``previous``
    (H, N) labels and the classifier as they are (``"kept"``), or, with no previous labels,
    leaves the granularity without labels (all -1, ``"inactive"``).
    """
    labels = previous.copy()
    actions = []
    for h, result in enumerate(results):
        if result.degenerate is None:
            labels[h] = result.labels
            classifiers.reset(h, cluster_centroids(features, result.labels))
            actions.append("new")
        elif (previous[h] >= 0).any():
            actions.append("kept")
        else:
            labels[h] = -1
            actions.append("inactive")
    return labels, actions


class PseudoLabelStep(TrainStep):
    """One iteration on pseudo-labelled target batches (plus a source batch with mixture).

    ``begin_epoch`` runs the round (features -> clusters -> labels, classifiers, sampler);
    ``len`` = target images // batch size (one pass when ``ITERS_PER_EPOCH`` is 0).
    """

    def __init__(self, model: nn.Module, labeler: PseudoLabeler, classifiers: PseudoClassifiers,
                 train_images: Dataset, feature_loader: Iterable, *, batches: BatchOptions,
                 losses: PseudoLabelLosses, rounds: RoundOptions, feature_key: str, flip: bool,
                 device: torch.device | str, domain_bn: bool,
                 source_loader: Optional[Iterable] = None,
                 teacher: Optional[nn.Module] = None) -> None:
        """feature_key: the training output the classifiers read; flip: the labelling features
        average the flipped image's; domain_bn: the mixed batch's target and source rows go
        through their own BatchNorms; source_loader: the mixture's labelled source batches;
        teacher: the model whose features (and whose ``pseudo_classifiers``' predictions) give
        the pseudo-labels (default ``model``)."""
        if len(labeler.granularities) != classifiers.num_heads:
            raise ValueError(f"{len(labeler.granularities)} granularities but "
                             f"{classifiers.num_heads} classifiers")
        if not 0 <= losses.triplet_granularity < classifiers.num_heads:
            raise ValueError("ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY="
                             f"{losses.triplet_granularity} is not an index of the "
                             f"{classifiers.num_heads} granularities")
        if batches.num_instances < 1 or batches.batch_size % batches.num_instances:
            raise ValueError(f"the batch size {batches.batch_size} must be a multiple of "
                             f"ADAPT.PSEUDO_LABEL.NUM_INSTANCES={batches.num_instances}")
        if feature_key not in FEATURE_KEYS.values():
            raise ValueError(f"feature_key must be one of {sorted(FEATURE_KEYS.values())}")
        if domain_bn and source_loader is None:
            raise ValueError("ADAPT.PSEUDO_LABEL.DSBN needs source batches in the forward pass "
                             "(ADAPT.PSEUDO_LABEL.MIXTURE True)")
        self.model = model
        self.labeler = labeler
        self.classifiers = classifiers
        self.train_images = train_images
        self.feature_loader = feature_loader
        self.batches = batches
        self.loss_options = losses
        self.round_options = rounds
        self.feature_key = feature_key
        self.flip = flip
        self.source = BatchStream(source_loader, device) if source_loader is not None else None
        self.device = torch.device(device)
        self.domain_bn = domain_bn
        self.teacher = teacher
        self.teacher_classifiers: Optional[PseudoClassifiers] = (
            None if teacher is None else teacher.get_submodule(CLASSIFIERS))
        self.labels = np.full((classifiers.num_heads, len(train_images)), -1, dtype=np.int64)
        self.rounds: List[Dict[str, Any]] = []
        self.target: Optional[BatchStream] = None

    def __len__(self) -> int:
        world = dist_rank_and_world_size()[1]
        return max(1, len(self.train_images) // (self.batches.batch_size * world))

    # ----------------------------------------------------------------- the round
    def pseudo_label_round(self, epoch: int) -> Dict[str, Any]:
        """Cluster the current features, update labels and classifiers; returns the round's
        record (also appended to ``rounds``)."""
        start = time.perf_counter()
        features = self._labelling_features()
        results = self.labeler(features)
        self.labels, actions = update_round_labels(results, self.labels, features,
                                                   self.classifiers)
        if self.teacher_classifiers is not None:  # the teacher classifies the new classes too
            self.teacher_classifiers.load_state_dict(self.classifiers.state_dict())
        record: Dict[str, Any] = {"epoch": epoch + 1, "round": "cluster", "granularities": []}
        for h, (g, result, action) in enumerate(zip(self.labeler.granularities, results,
                                                    actions)):
            entry: Dict[str, Any] = {
                "granularity": float(g), "num_clusters": result.num_clusters,
                "num_outliers": result.num_outliers, "num_classes": result.num_classes,
                "degenerate": result.degenerate, "labels": action}
            record["granularities"].append(entry)
            if result.degenerate is not None:
                logger.warning("Round %d, granularity %s: DEGENERATE clustering, %s; %s", epoch + 1,
                               g, result.degenerate,
                               "previous labels kept" if action == "kept"
                               else "no labels at this granularity this round")
            logger.info("Round %d, granularity %s: %d clusters, %d outliers, %d classes",
                        epoch + 1, g, result.num_clusters, result.num_outliers,
                        result.num_classes)
        self.target = BatchStream(self._target_loader(epoch), self.device)
        record["idle"] = self.idle
        if self.idle:
            logger.warning("Round %d: no pseudo-labels to train on: the model is not updated "
                           "this round", epoch + 1)
        record["seconds"] = time.perf_counter() - start
        self.rounds.append(record)
        return record

    def _labelling_features(self) -> torch.Tensor:
        """(N, D) features of the target training images from the teacher (or the model)."""
        model = self.teacher if self.teacher is not None else self.model
        return extract_features(model, self.feature_loader, self.flip, self.device)[0]

    def transport_round(self, epoch: int) -> Dict[str, Any]:
        """Re-assign every labelled granularity by label transport over the whole target set
        (classifier logits of the l2-normalised features); returns the round's record."""
        start = time.perf_counter()
        x = F.normalize(self._labelling_features(), dim=1).to(self.device)
        classifiers = (self.teacher_classifiers if self.teacher_classifiers is not None
                       else self.classifiers)
        record: Dict[str, Any] = {"epoch": epoch + 1, "round": "transport", "granularities": []}
        for h, g in enumerate(self.labeler.granularities):
            old = self.labels[h]
            if not (old >= 0).any():
                continue
            with torch.no_grad():
                logits = classifiers(h, x)
            new, result = transport_epoch_labels(logits, old, self.round_options.transport)
            self.labels[h] = new
            kept = new[new >= 0]
            entry: Dict[str, Any] = {
                "granularity": float(g), "num_clusters": int(len(np.unique(kept))),
                "num_outliers": int((new < 0).sum()),
                "changed": float((new != old)[old >= 0].mean()),
                "iterations": result.iterations, "error": result.error, "notes": result.notes}
            record["granularities"].append(entry)
            for note in result.notes:
                logger.warning("Round %d, granularity %s, transport: %s", epoch + 1, g, note)
            logger.info("Round %d, granularity %s: transport changed %.1f%% of the labels "
                        "(%d clusters used, %d iterations, marginal error %.2e)", epoch + 1, g,
                        100 * entry["changed"], entry["num_clusters"], result.iterations,
                        result.error)
        record["seconds"] = time.perf_counter() - start
        self.rounds.append(record)
        return record

    def _target_loader(self, epoch: int) -> Iterable:
        """PK batches over the sampler granularity's labels, or shuffled batches when they
        cannot fill one (no labels, too few clusters)."""
        labels = self.labels[self.loss_options.triplet_granularity]
        try:
            return build_batch_loader(self.train_images, labels.tolist(), self.batches.batch_size,
                                      self.batches.num_instances, self.batches.num_workers,
                                      self.batches.seed + epoch)
        except ValueError as err:
            logger.warning("Round %d: no PK batches over the pseudo-labels (%s); target "
                           "batches are drawn at random this round", epoch + 1, err)
        return build_shuffled_loader(self.train_images, self.batches.batch_size,
                                     self.batches.num_workers, self.batches.seed + epoch)

    # ----------------------------------------------------------------- the step
    def begin_epoch(self, epoch: int) -> None:
        if epoch % self.round_options.recluster_period == 0:
            self.pseudo_label_round(epoch)
        else:
            if self.round_options.transports("epoch"):
                self.transport_round(epoch)
            self.target = BatchStream(self._target_loader(epoch), self.device)
        if self.source is not None:
            self.source.begin_epoch(epoch)

    def losses(self, outputs: Dict[str, Any], labels: torch.Tensor,
               source_pids: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The named losses of one forward pass over ``B`` target rows followed by the source
        rows; labels (H, B) pseudo-labels of the target rows (-1: none)."""
        o = self.loss_options
        b = labels.shape[1]
        losses: Dict[str, torch.Tensor] = {}
        ce = []
        for h in range(self.classifiers.num_heads):
            rows = labels[h] >= 0
            if any_rank(bool(rows.any())):
                ce.append(over_branches(outputs[self.feature_key], lambda x: cross_entropy_smooth(
                    self.classifiers(h, x[:b][rows]), labels[h][rows], o.ce_epsilon)))
        if ce:
            losses["loss_target_ce"] = o.ce_scale * torch.stack(ce).mean()
        tri_labels = labels[o.triplet_granularity]
        if source_pids is not None and o.source_scale > 0:
            losses["loss_source_ce"] = o.source_scale * over_branches(
                outputs["logits"], lambda x: cross_entropy_smooth(x[b:], source_pids,
                                                                  o.ce_epsilon))
            # disjoint label spaces: source ids after every possible target class
            tri_labels = torch.cat([tri_labels, source_pids + self.classifiers.capacity])
        rows = tri_labels >= 0
        n = len(tri_labels)  # without source losses the source rows stay out of the triplet
        if any_rank(bool(rows.sum() > 1)):
            losses["loss_triplet"] = o.triplet_scale * over_branches(
                outputs["features"], lambda x: triplet_loss(x[:n][rows], tri_labels[rows],
                                                            o.triplet_margin))
        return losses

    @property
    def idle(self) -> bool:
        """Nothing to train on this round: no pseudo-labels at any granularity, no source."""
        return self.source is None and not (self.labels >= 0).any()

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """The losses of one batch, or ``{}`` (no forward pass, no update) when neither its
        target rows nor a source batch carry a label."""
        if self.target is None:
            raise RuntimeError("PseudoLabelStep.run() before begin_epoch()")
        if self.idle:
            return {}
        batch = self.target.next()
        labels = torch.as_tensor(self.labels[:, batch["indexes"].cpu().numpy()],
                                 device=self.device)
        if self.source is None and not (labels >= 0).any():
            return {}
        images, camids, source_pids = batch["images"], batch["camids"], None
        sections = contextlib.nullcontext()
        if self.source is not None:
            source = self.source.next()
            if self.domain_bn:
                sections = domain_sections(model, [("target", len(images)),
                                                   ("source", len(source["images"]))])
            images = torch.cat([images, source["images"]])
            camids = torch.cat([camids, source["camids"]])
            source_pids = source["pids"]
        with sections:
            outputs = forward_model(model, {"images": images, "camids": camids})
        if self.round_options.transports("batch"):
            labels = self.batch_transport(outputs, labels)
        return self.losses(outputs, labels, source_pids)

    def batch_transport(self, outputs: Dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        """Labels (H, B) of the batch's target rows re-assigned by transport among the batch's
        classes, from the detached logits of the model's first branch."""
        x = outputs[self.feature_key]
        x = (x if isinstance(x, torch.Tensor) else x[0])[:labels.shape[1]].detach()
        refined = labels.clone()
        for h in range(self.classifiers.num_heads):
            if (labels[h] >= 0).any():
                with torch.no_grad():
                    logits = self.classifiers(h, x)
                refined[h] = transport_batch_labels(logits, labels[h],
                                                   self.round_options.transport)
        return refined

    def scalars(self) -> Dict[str, float]:
        """The last round's cluster counts, per granularity index."""
        if not self.rounds:
            return {}
        values = {}
        for h, entry in enumerate(self.rounds[-1]["granularities"]):
            for key, value in entry.items():
                if isinstance(value, (int, float)) and key != "granularity":
                    values[f"pseudo{h}_{key}"] = float(value)
        return values

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {"labels": torch.from_numpy(self.labels.copy()),
                                 "rounds": self.rounds}
        if self.source is not None:
            state["source"] = self.source.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.labels = torch.as_tensor(state["labels"]).numpy().astype(np.int64)
        self.rounds = list(state["rounds"])
        if self.source is not None:
            self.source.load_state_dict(state.get("source", {}))


class FreshClassifierStateHook(HookBase):
    """Drops the optimiser state (momenta, Adam moments) of the pseudo-label classifiers
    before each re-clustering (every ``period`` epochs): row k is a new class afterwards."""

    def __init__(self, classifiers: PseudoClassifiers, period: int = 1) -> None:
        self.classifiers = classifiers
        self.period = period

    def before_epoch(self) -> None:
        if self.trainer.epoch % self.period:
            return
        for param in self.classifiers.parameters():
            self.trainer.optimizer.state.pop(param, None)


class RoundTensorBoardHook(HookBase):
    """Puts each round's cluster counts into the trainer's event storage (for TensorBoard), one
    point per epoch: ``pseudo_labels/g<index>_<key>`` (e.g. ``pseudo_labels/g0_num_clusters``),
    which the trainer's TensorBoard writer writes."""

    def __init__(self, step: PseudoLabelStep) -> None:
        self.step = step

    def after_epoch(self) -> None:
        for name, value in self.step.scalars().items():
            self.trainer.storage.put_scalar(f"pseudo_labels/{name.replace('pseudo', 'g', 1)}",
                                            value, self.trainer.epoch + 1)


def retrieval_dim(model: nn.Module, loader: Iterable, device: torch.device) -> int:
    """Size D of the model's retrieval embedding (one eval forward on the first batch)."""
    batch = next(iter(loader))
    return int(extract_features(model, [batch], False, device)[0].shape[1])


def target_feature_loader(ctx: AdaptContext) -> tuple[DataLoader, int]:
    """The loader of the target training images with the test transforms (for clustering),
    and the size D of the retrieval feature; checks ``MODEL.HEADS.NECK_FEAT``."""
    s = ctx.settings
    if s.neck_feat not in FEATURE_KEYS:
        raise ValueError(f"MODEL.HEADS.NECK_FEAT must be one of {sorted(FEATURE_KEYS)}, "
                         f"got {s.neck_feat!r}")
    loader = DataLoader(ctx.target.dataset(s.test_transform), batch_size=s.test_batch_size,
                        sampler=ShardSampler(len(ctx.target)), num_workers=s.num_workers,
                        collate_fn=collate)
    return loader, retrieval_dim(ctx.model, loader, ctx.device)


@METHODS.register("cluster", aliases=("strong_baseline",))
class ClusterAdaptation(AdaptMethod):
    """Pseudo-label training at one granularity: the losses' ``triplet_granularity`` picks it
    among the labeler's (ADAPT.CLUSTER) granularities; :class:`MLT` keeps them all."""

    single_granularity = True
    training_modules = (CLASSIFIERS,)

    def __init__(self, labeler: PseudoLabeler, losses: PseudoLabelLosses, rounds: RoundOptions,
                 mixture: MixtureOptions, teacher: TeacherOptions, num_instances: int,
                 cls_scale: float) -> None:
        """num_instances: K images per pseudo-identity (and source identity) in a PK batch;
        cls_scale: 0 for bias-free linear classifier logits, > 0 for cosine logits at that
        scale (:class:`PseudoClassifiers`)."""
        if not 0 <= losses.triplet_granularity < len(labeler.granularities):
            raise ValueError("ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY="
                             f"{losses.triplet_granularity} is not an index of the "
                             f"granularities {labeler.granularities}")
        if self.single_granularity:
            labeler = dataclasses.replace(
                labeler, granularities=(labeler.granularities[losses.triplet_granularity],))
            losses = dataclasses.replace(losses, triplet_granularity=0)
        self.labeler = labeler
        self.loss_options = losses
        self.round_options = rounds
        self.mixture = mixture
        self.teacher_options = teacher
        self.num_instances = num_instances
        self.cls_scale = cls_scale
        self.teacher: Optional[MeanTeacher] = None
        self.step: Optional[PseudoLabelStep] = None

    @property
    def uses_source(self) -> bool:
        """Source batches join the target ones only with the mixture
        (ADAPT.PSEUDO_LABEL.MIXTURE)."""
        return self.mixture.enabled

    @classmethod
    def from_config(cls, adapt) -> "ClusterAdaptation":
        m = adapt.PSEUDO_LABEL
        return cls(PseudoLabeler.from_config(adapt.CLUSTER), PseudoLabelLosses.from_config(m),
                   RoundOptions.from_config(m), MixtureOptions.from_config(m),
                   TeacherOptions.from_config(m), m.NUM_INSTANCES, m.CLS_SCALE)

    def prepare_model(self, model: nn.Module) -> None:
        """With DSBN, every BatchNorm gets a target (main, exported) and a source set; the
        source sets are training-only modules."""
        if self.mixture.domain_bn:
            count = convert_domain_batchnorm(model, "target", ("source",))
            self.training_modules = (*type(self).training_modules, *other_domain_modules(model))
            logger.info("DSBN: %d BatchNorm layers now keep target and source statistics", count)

    def build_step(self, ctx: AdaptContext) -> PseudoLabelStep:
        """The step; its classifiers join the model (``model.pseudo_classifiers``) so that the
        optimiser, built next, trains them and checkpoints hold them."""
        s = ctx.settings
        feature_loader, dim = target_feature_loader(ctx)
        classifiers = PseudoClassifiers(len(self.labeler.granularities), len(ctx.target),
                                        dim, self.cls_scale).to(ctx.device)
        ctx.model.add_module(self.training_modules[0], classifiers)
        teacher = None
        if self.teacher_options.enabled:  # a copy of the model with its classifiers
            self.teacher = MeanTeacher(ctx.model, self.teacher_options.momentum,
                                       self.teacher_options.ramp)
            teacher = self.teacher.teacher
        batch_size = per_rank_batch_size(s.batch_size, "ADAPT.SOLVER.IMS_PER_BATCH")
        source_loader = None
        if self.mixture.enabled:
            source_batch_size = (per_rank_batch_size(self.mixture.batch_size,
                                                     "ADAPT.PSEUDO_LABEL.SOURCE_IMS_PER_BATCH")
                                 if self.mixture.batch_size else batch_size)
            source_loader = build_batch_loader(
                ctx.source.dataset(s.train_transform), ctx.source.pids, source_batch_size,
                self.num_instances, s.num_workers, s.seed)
        self.step = PseudoLabelStep(
            ctx.model, self.labeler, classifiers, ctx.target.dataset(s.train_transform),
            feature_loader,
            batches=BatchOptions(batch_size, self.num_instances, s.num_workers, s.seed),
            losses=self.loss_options, rounds=self.round_options,
            feature_key=FEATURE_KEYS[s.neck_feat], flip=s.flip, device=ctx.device,
            domain_bn=self.mixture.domain_bn, source_loader=source_loader, teacher=teacher)
        return self.step

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        if self.step is None:
            raise RuntimeError("hooks() needs build_step() first")
        hooks: List[HookBase] = [
            FreshClassifierStateHook(self.step.classifiers, self.round_options.recluster_period),
            RoundTensorBoardHook(self.step)]
        if self.teacher is not None:
            hooks.append(MeanTeacherHook(self.teacher))
        return hooks

    def pseudo_labels(self) -> Optional[np.ndarray]:
        return None if self.step is None else self.step.labels.copy()

    def report(self) -> Dict[str, Any]:
        """``rounds``: per round, each granularity's clusters, outliers and what its labels
        did; ``degenerate_rounds``: rounds with a degenerate granularity; ``idle_rounds``: rounds
        without any update (nothing to train on)."""
        rounds = self.step.rounds if self.step is not None else []
        return {"rounds": rounds,
                "degenerate_rounds": sum(any(g.get("degenerate") for g in r["granularities"])
                                         for r in rounds),
                "idle_rounds": sum(bool(r.get("idle")) for r in rounds)}
