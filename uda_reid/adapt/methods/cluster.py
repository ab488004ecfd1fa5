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
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uda_reid.adapt.base import AdaptContext, AdaptMethod
from uda_reid.adapt.clustering import ClusterResult
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_labels import PseudoLabeler, cluster_centroids
from uda_reid.adapt.registry import METHODS
from uda_reid.adapt.sampling import ShuffledBatchSampler
from uda_reid.data.loaders import build_batch_loader, collate
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import BatchStream, TrainStep, forward_model
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.computer import over_branches
from uda_reid.losses.functional import cross_entropy_smooth, triplet_loss

logger = logging.getLogger(__name__)

# The training output the classifiers read: the one the model retrieves with (NECK_FEAT).
FEATURE_KEYS = {"after": "embedding", "before": "features"}


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
                 train_images: Dataset, feature_loader: Iterable,
                 batch_size: int, num_instances: int, feature_key: str = "embedding",
                 triplet_granularity: int = 0, ce_epsilon: float = 0.1, ce_scale: float = 1.0,
                 triplet_margin: float = 0.3, triplet_scale: float = 1.0,
                 source_loader: Optional[Iterable] = None, flip: bool = False,
                 num_workers: int = 0,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        if len(labeler.granularities) != classifiers.num_heads:
            raise ValueError(f"{len(labeler.granularities)} granularities but "
                             f"{classifiers.num_heads} classifiers")
        if not 0 <= triplet_granularity < classifiers.num_heads:
            raise ValueError(f"ADAPT.MLT.TRIPLET_GRANULARITY={triplet_granularity} is not an "
                             f"index of the {classifiers.num_heads} granularities")
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"the batch size {batch_size} must be a multiple of "
                             f"ADAPT.MLT.NUM_INSTANCES={num_instances}")
        if feature_key not in FEATURE_KEYS.values():
            raise ValueError(f"feature_key must be one of {sorted(FEATURE_KEYS.values())}")
        self.model = model
        self.labeler = labeler
        self.classifiers = classifiers
        self.train_images = train_images
        self.feature_loader = feature_loader
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.feature_key = feature_key
        self.triplet_granularity = triplet_granularity
        self.ce_epsilon, self.ce_scale = ce_epsilon, ce_scale
        self.triplet_margin, self.triplet_scale = triplet_margin, triplet_scale
        self.source = BatchStream(source_loader, device) if source_loader is not None else None
        self.flip = flip
        self.num_workers = num_workers
        self.seed = seed
        self.device = torch.device(device)
        self.labels = np.full((classifiers.num_heads, len(train_images)), -1, dtype=np.int64)
        self.rounds: List[Dict[str, Any]] = []
        self.target: Optional[BatchStream] = None

    def __len__(self) -> int:
        return max(1, len(self.train_images) // self.batch_size)

    # ----------------------------------------------------------------- the round
    def pseudo_label_round(self, epoch: int) -> Dict[str, Any]:
        """Cluster the current features, update labels and classifiers; returns the round's
        record (also appended to ``rounds``)."""
        start = time.perf_counter()
        features = extract_features(self.model, self.feature_loader, self.flip, self.device)[0]
        results = self.labeler(features)
        self.labels, actions = update_round_labels(results, self.labels, features,
                                                   self.classifiers)
        record: Dict[str, Any] = {"epoch": epoch + 1, "granularities": []}
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

    def _target_loader(self, epoch: int) -> Iterable:
        """PK batches over the sampler granularity's labels, or shuffled batches when they
        cannot fill one (no labels, too few clusters)."""
        labels = self.labels[self.triplet_granularity]
        try:
            return build_batch_loader(self.train_images, labels.tolist(), self.batch_size,
                                      self.num_instances, self.num_workers, self.seed + epoch)
        except ValueError as err:
            logger.warning("Round %d: no PK batches over the pseudo-labels (%s); target "
                           "batches are drawn at random this round", epoch + 1, err)
        sampler = ShuffledBatchSampler(len(self.train_images), self.batch_size, self.seed + epoch)
        return torch.utils.data.DataLoader(self.train_images, batch_sampler=sampler,
                                           num_workers=self.num_workers, collate_fn=collate)

    # ----------------------------------------------------------------- the step
    def begin_epoch(self, epoch: int) -> None:
        self.pseudo_label_round(epoch)
        if self.source is not None:
            self.source.begin_epoch(epoch)

    def losses(self, outputs: Dict[str, Any], labels: torch.Tensor,
               source_pids: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The named losses of one forward pass over ``B`` target rows followed by the source
        rows; labels (H, B) pseudo-labels of the target rows (-1: none)."""
        b = labels.shape[1]
        losses: Dict[str, torch.Tensor] = {}
        ce = []
        for h in range(self.classifiers.num_heads):
            rows = labels[h] >= 0
            if rows.any():
                ce.append(over_branches(outputs[self.feature_key], lambda x: cross_entropy_smooth(
                    self.classifiers(h, x[:b][rows]), labels[h][rows], self.ce_epsilon)))
        if ce:
            losses["loss_target_ce"] = self.ce_scale * torch.stack(ce).mean()
        tri_labels = labels[self.triplet_granularity]
        if source_pids is not None:
            losses["loss_source_ce"] = over_branches(outputs["logits"], lambda x: (
                cross_entropy_smooth(x[b:], source_pids, self.ce_epsilon)))
            # disjoint label spaces: source ids after every possible target class
            tri_labels = torch.cat([tri_labels, source_pids + self.classifiers.capacity])
        rows = tri_labels >= 0
        if rows.sum() > 1:
            losses["loss_triplet"] = self.triplet_scale * over_branches(
                outputs["features"], lambda x: triplet_loss(x[rows], tri_labels[rows],
                                                            self.triplet_margin))
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
        if self.source is not None:
            source = self.source.next()
            images = torch.cat([images, source["images"]])
            camids = torch.cat([camids, source["camids"]])
            source_pids = source["pids"]
        outputs = forward_model(model, {"images": images, "camids": camids})
        return self.losses(outputs, labels, source_pids)

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
    before each round: row k is a new class after re-clustering."""

    def __init__(self, classifiers: PseudoClassifiers) -> None:
        self.classifiers = classifiers

    def before_epoch(self) -> None:
        for param in self.classifiers.parameters():
            self.trainer.optimizer.state.pop(param, None)


class RoundTensorBoardHook(HookBase):
    """Writes each round's cluster counts to TensorBoard, one point per epoch:
    ``pseudo_labels/g<index>_<key>`` (e.g. ``pseudo_labels/g0_num_clusters``)."""

    def __init__(self, step: PseudoLabelStep, log_dir: str) -> None:
        self.step = step
        self.log_dir = log_dir
        self.writer = None

    def before_train(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=self.log_dir, filename_suffix=".pseudo_labels")

    def after_epoch(self) -> None:
        for name, value in self.step.scalars().items():
            self.writer.add_scalar(f"pseudo_labels/{name.replace('pseudo', 'g', 1)}", value,
                                   self.trainer.epoch + 1)
        self.writer.flush()

    def after_train(self) -> None:
        self.writer.close()


def retrieval_dim(model: nn.Module, loader: Iterable, device: torch.device) -> int:
    """Size D of the model's retrieval embedding (one eval forward on the first batch)."""
    batch = next(iter(loader))
    return int(extract_features(model, [batch], False, device)[0].shape[1])


@METHODS.register("cluster", aliases=("strong_baseline",))
class ClusterAdaptation(AdaptMethod):
    """Pseudo-label training at one granularity: ``granularity_index`` picks it among the
    labeler's (ADAPT.CLUSTER) granularities; :class:`MLT` keeps them all."""

    single_granularity = True
    training_modules = ("pseudo_classifiers",)

    def __init__(self, labeler: PseudoLabeler, granularity_index: int = 0,
                 ce_epsilon: float = 0.1, ce_scale: float = 1.0, triplet_margin: float = 0.3,
                 triplet_scale: float = 1.0, num_instances: int = 4, cls_scale: float = 0.0,
                 mixture: bool = False, source_batch_size: int = 0) -> None:
        if not 0 <= granularity_index < len(labeler.granularities):
            raise ValueError(f"ADAPT.MLT.TRIPLET_GRANULARITY={granularity_index} is not an index "
                             f"of the granularities {labeler.granularities}")
        if self.single_granularity:
            labeler = dataclasses.replace(
                labeler, granularities=(labeler.granularities[granularity_index],))
            granularity_index = 0
        self.labeler = labeler
        self.granularity_index = granularity_index
        self.ce_epsilon, self.ce_scale = ce_epsilon, ce_scale
        self.triplet_margin, self.triplet_scale = triplet_margin, triplet_scale
        self.num_instances = num_instances
        self.cls_scale = cls_scale
        self.mixture = mixture
        self.source_batch_size = source_batch_size
        self.step: Optional[PseudoLabelStep] = None

    @classmethod
    def from_config(cls, adapt) -> "ClusterAdaptation":
        m = adapt.MLT
        return cls(PseudoLabeler.from_config(adapt.CLUSTER), m.TRIPLET_GRANULARITY,
                   m.CE_EPSILON, m.CE_SCALE, m.TRIPLET_MARGIN, m.TRIPLET_SCALE, m.NUM_INSTANCES,
                   m.CLS_SCALE, m.MIXTURE, m.SOURCE_IMS_PER_BATCH)

    def build_step(self, ctx: AdaptContext) -> PseudoLabelStep:
        """The step; its classifiers join the model (``model.pseudo_classifiers``) so that the
        optimiser, built next, trains them and checkpoints hold them."""
        s = ctx.settings
        if s.neck_feat not in FEATURE_KEYS:
            raise ValueError(f"MODEL.HEADS.NECK_FEAT must be one of {sorted(FEATURE_KEYS)}, "
                             f"got {s.neck_feat!r}")
        feature_loader = DataLoader(ctx.target.dataset(s.test_transform),
                                    batch_size=s.test_batch_size, shuffle=False,
                                    num_workers=s.num_workers, collate_fn=collate)
        dim = retrieval_dim(ctx.model, feature_loader, ctx.device)
        classifiers = PseudoClassifiers(len(self.labeler.granularities), len(ctx.target),
                                        dim, self.cls_scale).to(ctx.device)
        ctx.model.add_module(self.training_modules[0], classifiers)
        source_loader = None
        if self.mixture:
            source_loader = build_batch_loader(
                ctx.source.dataset(s.train_transform), ctx.source.pids,
                self.source_batch_size or s.batch_size, self.num_instances, s.num_workers,
                s.seed)
        self.step = PseudoLabelStep(
            ctx.model, self.labeler, classifiers, ctx.target.dataset(s.train_transform),
            feature_loader, s.batch_size, self.num_instances, FEATURE_KEYS[s.neck_feat],
            self.granularity_index, self.ce_epsilon, self.ce_scale, self.triplet_margin,
            self.triplet_scale, source_loader, s.flip, s.num_workers, s.seed, ctx.device)
        return self.step

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        if self.step is None:
            raise RuntimeError("hooks() needs build_step() first")
        return [FreshClassifierStateHook(self.step.classifiers),
                RoundTensorBoardHook(self.step, str(ctx.output_dir))]

    def pseudo_labels(self) -> Optional[np.ndarray]:
        return None if self.step is None else self.step.labels.copy()

    def report(self) -> Dict[str, Any]:
        """``rounds``: per round, each granularity's clusters, outliers and what its labels
        did; ``degenerate_rounds``: rounds with a degenerate granularity; ``idle_rounds``: rounds
        without any update (nothing to train on)."""
        rounds = self.step.rounds if self.step is not None else []
        return {"rounds": rounds,
                "degenerate_rounds": sum(any(g["degenerate"] for g in r["granularities"])
                                         for r in rounds),
                "idle_rounds": sum(bool(r.get("idle")) for r in rounds)}
