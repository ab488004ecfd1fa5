"""Mutual Mean-Teaching (Ge et al., ICLR 2020; yxgeee/MMT): two networks teach each other
through their mean teachers.

Network 1 starts from the run's source model, network 2 from the source model of another
seed, ``SEED + ADAPT.MMT.PEER_SOURCE_SEED_OFFSET`` (as the paper pre-trains two source models
with different seeds, 1 and 2 in yxgeee/MMT's scripts; the pipeline trains it once under that
seed's stage-1 cache key and reuses it, :meth:`AdaptContext.start_model`; without a source,
the start model of that seed; offset 0: a copy of network 1's). Network 2 lives inside
network 1 as the training-only sub-module ``mmt_peer`` (so the shared trainer's one optimiser
trains both and its checkpoints hold both; a resume reads both from the checkpoint), each with
its own pseudo-label classifier (``pseudo_classifiers``).
One :class:`~uda_reid.adapt.mean_teacher.MeanTeacher` of that composite model is the pair of
teachers: the EMA of every tensor of both networks and classifiers.

Every epoch (one round) the l2-normalised target features of the two teachers are averaged and
clustered at ADAPT.CLUSTER's one granularity (k-means with K clusters, or DBSCAN); all four
classifiers restart from the l2-normalised cluster centroids. Every PK batch over the
pseudo-labels is drawn with two independent augmentations, one per network; network i (view
i) learns from the hard labels and from the teacher of network j (view j)::

    (1 - w_ce) CE_ls(C_i(f_i), y) + w_ce SoftCE(C_i(f_i), C'_j(f'_j))
    + (1 - w_tri) triplet(f_i, y) + w_tri SoftTriplet(f_i, f'_j, y)

summed over both networks (primes: teacher; ``w_ce``, ``w_tri``: ADAPT.MMT's SOFT_*_WEIGHT;
the classifier reads the retrieval feature of NECK_FEAT, the triplets the pooled feature).
The teachers follow by EMA after every step. Evaluation, ``last.pth`` and the exported model
are the teacher of network 1, as in the paper.

Differences from the official code: the teachers' forward passes use their running BatchNorm
statistics (the EMA of the students') instead of the batch's; the Adam moments of the
classifiers, not of every weight, restart at each re-clustering.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from uda_reid.adapt.base import AdaptContext
from uda_reid.adapt.mean_teacher import MeanTeacher
from uda_reid.adapt.methods.cluster import (CLASSIFIERS, FEATURE_KEYS, ClusterAdaptation,
                                            FreshClassifierStateHook, PseudoLabelStep,
                                            target_feature_loader)
from uda_reid.adapt.pseudo_classifiers import PseudoClassifiers
from uda_reid.adapt.pseudo_label_options import (BatchOptions, MixtureOptions, PseudoLabelLosses,
                                                 RoundOptions, TeacherOptions)
from uda_reid.adapt.pseudo_labels import PseudoLabeler
from uda_reid.adapt.registry import METHODS
from uda_reid.config.sections.adapt import method_options
from uda_reid.data.loaders import per_rank_batch_size
from uda_reid.engine.hooks import HookBase
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.functional import cross_entropy_smooth, triplet_loss
from uda_reid.losses.soft_targets import soft_cross_entropy, soft_triplet_loss
from uda_reid.models.forward import forward_model
from uda_reid.utils.distributed import any_rank

PEER = "mmt_peer"
# MMT re-clusters every epoch without label transport, and mixes no source batch in.
EVERY_EPOCH = RoundOptions(1, None)
NO_MIXTURE = MixtureOptions(False, 0, False)
_INFERENCE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.Dropout)


# ADAPT.MMT: two networks, each with a mean teacher, learn from hard pseudo-labels
# (ADAPT.CLUSTER, one granularity) and from the soft predictions of the other network's teacher.
# Defaults from yxgeee/MMT (examples/mmt_train_kmeans.py, scripts/train_mmt_kmeans.sh,
# mmt/trainers.py).
@method_options("MMT")
class MMTConfig:
    # Loss of each network: (1 - SOFT_CE_WEIGHT) CE(hard labels) + SOFT_CE_WEIGHT CE(peer
    # teacher's softmax) + (1 - SOFT_TRIPLET_WEIGHT) triplet(hard labels) + SOFT_TRIPLET_WEIGHT
    # softmax triplet(peer teacher's); --soft-ce-weight 0.5 --soft-tri-weight 0.8.
    SOFT_CE_WEIGHT: float = 0.5
    SOFT_TRIPLET_WEIGHT: float = 0.8
    CE_EPSILON: float = 0.1  # label smoothing of the hard CE (CrossEntropyLabelSmooth)
    # Hard triplet margin; 0: the soft margin log(1 + exp(d_ap - d_an)) of the official
    # SoftTripletLoss(margin=0.0).
    TRIPLET_MARGIN: float = 0.0
    NUM_INSTANCES: int = 4  # K images per pseudo-identity in a PK batch (--num-instances)
    # 0: bias-free linear logits (the official classifier); > 0: cosine logits at this scale.
    # Either way every round starts the classifiers at the l2-normalised cluster centroids.
    CLS_SCALE: float = 0.0
    TEACHER_MOMENTUM: float = 0.999  # EMA alpha (--alpha)
    TEACHER_RAMP: bool = True  # alpha = min(1 - 1 / (step + 1), momentum) (_update_ema_variables)
    # Network 2 starts from the source model of SEED + this offset (trained once under that
    # seed's stage-1 cache key and reused; --init-1/--init-2: the pre-trainings of seeds 1 and 2,
    # scripts/pretrain.sh, train_mmt_kmeans.sh); 0: from network 1's source model.
    PEER_SOURCE_SEED_OFFSET: int = 1


@dataclass(frozen=True)
class MMTOptions:
    """MMT's options (the ADAPT.MMT section's values, checked once): the peer teacher's soft CE
    and soft triplet weigh ``soft_ce_weight`` and ``soft_triplet_weight`` (in [0, 1]), the
    hard-label CE (smoothing ``ce_epsilon``) and triplet (``triplet_margin``, 0: soft margin)
    one minus them; PK batches of ``num_instances`` per pseudo-identity; classifier logits at
    ``cls_scale`` (:class:`PseudoClassifiers`); the mean teachers' EMA ``teacher``; network 2
    starts from the source model of the seed + ``peer_seed_offset`` (0: network 1's)."""

    soft_ce_weight: float
    soft_triplet_weight: float
    ce_epsilon: float
    triplet_margin: float
    num_instances: int
    cls_scale: float
    teacher: TeacherOptions
    peer_seed_offset: int

    def __post_init__(self) -> None:
        for key, weight in (("SOFT_CE_WEIGHT", self.soft_ce_weight),
                            ("SOFT_TRIPLET_WEIGHT", self.soft_triplet_weight)):
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"ADAPT.MMT.{key} must lie in [0, 1], got {weight}")
        if not 0.0 <= self.teacher.momentum < 1.0:
            raise ValueError(f"ADAPT.MMT.TEACHER_MOMENTUM must lie in [0, 1), got "
                             f"{self.teacher.momentum}")
        if self.peer_seed_offset < 0:
            raise ValueError(f"ADAPT.MMT.PEER_SOURCE_SEED_OFFSET must be >= 0, got "
                             f"{self.peer_seed_offset}")

    @property
    def losses(self) -> PseudoLabelLosses:
        """The hard-label losses (one granularity, no source rows)."""
        return PseudoLabelLosses(self.ce_epsilon, 1.0 - self.soft_ce_weight, self.triplet_margin,
                                 1.0 - self.soft_triplet_weight, triplet_granularity=0,
                                 source_scale=0.0)

    @classmethod
    def from_config(cls, m: MMTConfig) -> "MMTOptions":
        """From an ADAPT.MMT section."""
        return cls(m.SOFT_CE_WEIGHT, m.SOFT_TRIPLET_WEIGHT, m.CE_EPSILON, m.TRIPLET_MARGIN,
                   m.NUM_INSTANCES, m.CLS_SCALE,
                   TeacherOptions(True, m.TEACHER_MOMENTUM, m.TEACHER_RAMP),
                   m.PEER_SOURCE_SEED_OFFSET)


class TwoViews:
    """A transform applied twice to one image: (2, C, H, W), two independent draws."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.stack([self.transform(image), self.transform(image)])


@contextlib.contextmanager
def training_outputs(model: nn.Module) -> Iterator[None]:
    """``model`` returns its training outputs (logits, features) while its BatchNorms use and
    keep their running statistics and dropout is off; its modes are restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    for m in model.modules():
        if isinstance(m, _INFERENCE_LAYERS):
            m.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def single_branch(value: Any) -> torch.Tensor:
    """The model output as one tensor; MMT has no pairing of multi-branch (JPM) outputs."""
    if isinstance(value, torch.Tensor):
        return value
    if len(value) == 1:
        return value[0]
    raise ValueError("ADAPT.METHOD mmt needs a single-branch head (no JPM): the model returned "
                     f"{len(value)} branches")


def check_one_granularity(labeler: PseudoLabeler) -> None:
    """MMT clusters at one granularity: a clear error for ADAPT.CLUSTER with several."""
    if len(labeler.granularities) != 1:
        raise ValueError("ADAPT.METHOD mmt clusters at one granularity; ADAPT.CLUSTER gives "
                         f"{len(labeler.granularities)}: {list(labeler.granularities)}")


def network_pair(model: nn.Module) -> Tuple[nn.Module, nn.Module]:
    """(network 1, network 2) of a composite model (or of its teacher)."""
    return model, model.get_submodule(PEER)


class MMTStep(PseudoLabelStep):
    """One MMT iteration on a two-view PK batch; the rounds are :class:`PseudoLabelStep`'s
    with the teachers' mean features and the classifiers of all four networks restarted.

    model: network 1 holding network 2 (``mmt_peer``) and both holding their classifiers
    (``pseudo_classifiers``); mean_teacher: the EMA of that model; train_images: items whose
    ``images`` are two views (2, C, H, W) of an image (:class:`TwoViews`).
    """

    def __init__(self, model: nn.Module, mean_teacher: MeanTeacher, labeler: PseudoLabeler,
                 train_images: Dataset, feature_loader: Iterable, *, batches: BatchOptions,
                 options: MMTOptions, feature_key: str, flip: bool,
                 device: torch.device | str) -> None:
        """options: the losses' weights (the hard-label losses are ``options.losses``)."""
        check_one_granularity(labeler)
        if batches.num_instances < 1 or batches.batch_size % batches.num_instances:
            raise ValueError(f"the batch size {batches.batch_size} must be a multiple of "
                             f"ADAPT.MMT.NUM_INSTANCES={batches.num_instances}")
        super().__init__(model, labeler, model.get_submodule(CLASSIFIERS), train_images,
                         feature_loader, batches=batches, losses=options.losses,
                         rounds=EVERY_EPOCH, feature_key=feature_key, flip=flip, device=device,
                         domain_bn=False, teacher=mean_teacher.teacher)
        self.soft_ce_weight = options.soft_ce_weight
        self.soft_triplet_weight = options.soft_triplet_weight

    def _labelling_features(self) -> torch.Tensor:
        """(N, D) mean of the two teachers' l2-normalised target features."""
        features = [F.normalize(extract_features(net, self.feature_loader, self.flip,
                                                 self.device)[0].float(), dim=1)
                    for net in network_pair(self.teacher)]
        return (features[0] + features[1]) / 2

    def pseudo_label_round(self, epoch: int) -> Dict[str, Any]:
        """The round of :class:`PseudoLabelStep`; new clusters restart network 2's classifier
        and its teacher's from the same centroids as network 1's."""
        record = super().pseudo_label_round(epoch)
        if record["granularities"][0]["labels"] == "new":
            state = self.classifiers.state_dict()
            for net in (self.model.get_submodule(PEER), self.teacher.get_submodule(PEER)):
                net.get_submodule(CLASSIFIERS).load_state_dict(state)
        return record

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """The four summed losses of both networks, or ``{}`` when the batch has no label."""
        if self.target is None:
            raise RuntimeError("MMTStep.run() before begin_epoch()")
        if self.idle:
            return {}
        batch = self.target.next()
        labels = torch.as_tensor(self.labels[0, batch["indexes"].cpu().numpy()],
                                 device=self.device)
        rows = labels >= 0
        if not any_rank(bool(rows.any())):
            return {}
        views, camids = batch["images"], batch["camids"]
        if views.dim() != 5 or views.shape[1] != 2:
            raise ValueError(f"MMTStep needs two views per image (B, 2, C, H, W), got "
                             f"{tuple(views.shape)}")
        students = [forward_model(net, {"images": views[:, v], "camids": camids})
                    for v, net in enumerate(network_pair(model))]
        with torch.no_grad(), training_outputs(self.teacher):
            teachers = [forward_model(net, {"images": views[:, v], "camids": camids})
                        for v, net in enumerate(network_pair(self.teacher))]
        return self.mutual_losses(students, teachers, labels[rows], rows)

    def mutual_losses(self, students: Sequence[Dict[str, Any]],
                      teachers: Sequence[Dict[str, Any]], labels: torch.Tensor,
                      rows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Losses of networks 1 and 2 from their outputs and their teachers' (network i is
        taught by teacher 1 - i), over the batch ``rows`` (B,) with pseudo-labels (R,)."""
        classifiers = [net.get_submodule(CLASSIFIERS) for net in network_pair(self.model)]
        teacher_classifiers = [net.get_submodule(CLASSIFIERS)
                               for net in network_pair(self.teacher)]
        o = self.loss_options
        terms: Dict[str, List[torch.Tensor]] = {"ce": [], "soft_ce": [], "tri": [], "soft_tri": []}
        for i, j in ((0, 1), (1, 0)):
            logits = classifiers[i](0, single_branch(students[i][self.feature_key])[rows])
            with torch.no_grad():
                peer_logits = teacher_classifiers[j](
                    0, single_branch(teachers[j][self.feature_key])[rows])
            features = single_branch(students[i]["features"])[rows]
            peer_features = single_branch(teachers[j]["features"])[rows]
            terms["ce"].append(cross_entropy_smooth(logits, labels, o.ce_epsilon))
            terms["soft_ce"].append(soft_cross_entropy(logits, peer_logits))
            terms["tri"].append(triplet_loss(features, labels, o.triplet_margin))
            terms["soft_tri"].append(soft_triplet_loss(features, labels, peer_features))
        return {"loss_ce": o.ce_scale * sum(terms["ce"]),
                "loss_soft_ce": self.soft_ce_weight * sum(terms["soft_ce"]),
                "loss_triplet": o.triplet_scale * sum(terms["tri"]),
                "loss_soft_triplet": self.soft_triplet_weight * sum(terms["soft_tri"])}


@METHODS.register("mmt", aliases=("mutual_mean_teaching",))
class MMT(ClusterAdaptation):
    """Mutual Mean-Teaching over ADAPT.CLUSTER's one granularity with ADAPT.MMT's options; the
    rounds, reported labels and report are :class:`ClusterAdaptation`'s."""

    training_modules = (CLASSIFIERS, PEER)

    def __init__(self, labeler: PseudoLabeler, options: MMTOptions) -> None:
        check_one_granularity(labeler)
        super().__init__(labeler, options.losses, EVERY_EPOCH, NO_MIXTURE, options.teacher,
                         options.num_instances, options.cls_scale)
        self.options = options

    @classmethod
    def from_config(cls, adapt) -> "MMT":
        """From the ADAPT section; both networks' parameters form one optimiser whose backbone
        prefix only matches network 1, so ADAPT.SOLVER must give backbone and heads one LR."""
        s = adapt.SOLVER
        if s.BACKBONE_LR_FACTOR != s.HEADS_LR_FACTOR:
            raise ValueError("ADAPT.METHOD mmt trains every part of both networks at one "
                             "learning rate: ADAPT.SOLVER.BACKBONE_LR_FACTOR "
                             f"({s.BACKBONE_LR_FACTOR}) must equal HEADS_LR_FACTOR "
                             f"({s.HEADS_LR_FACTOR})")
        return cls(PseudoLabeler.from_config(adapt.CLUSTER), MMTOptions.from_config(adapt.MMT))

    def start_model_seeds(self, seed: int) -> Tuple[int, ...]:
        """Network 2's seed, ``seed + PEER_SOURCE_SEED_OFFSET``; none at offset 0."""
        offset = self.options.peer_seed_offset
        return (seed + offset,) if offset else ()

    def build_step(self, ctx: AdaptContext) -> MMTStep:
        """Adds network 1's classifier, then network 2 (the start model of the peer's seed, or
        a copy of network 1 at offset 0) with a copy of that classifier, then copies the
        teachers, before the trainer builds its optimiser over all of it."""
        s = ctx.settings
        feature_loader, dim = target_feature_loader(ctx)
        classifiers = PseudoClassifiers(1, len(ctx.target), dim, self.cls_scale).to(ctx.device)
        ctx.model.add_module(CLASSIFIERS, classifiers)
        if self.options.peer_seed_offset:
            peer = ctx.start_model(s.seed + self.options.peer_seed_offset)
            peer.add_module(CLASSIFIERS, copy.deepcopy(classifiers))
        else:
            peer = copy.deepcopy(ctx.model)
        ctx.model.add_module(PEER, peer)
        self.teacher = MeanTeacher(ctx.model, self.teacher_options.momentum,
                                   self.teacher_options.ramp)
        batches = BatchOptions(per_rank_batch_size(s.batch_size, "ADAPT.SOLVER.IMS_PER_BATCH"),
                               self.num_instances, s.num_workers, s.seed)
        self.step = MMTStep(
            ctx.model, self.teacher, self.labeler,
            ctx.target.dataset(TwoViews(s.train_transform)), feature_loader, batches=batches,
            options=self.options, feature_key=FEATURE_KEYS[s.neck_feat], flip=s.flip,
            device=ctx.device)
        return self.step

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        """:class:`ClusterAdaptation`'s (network 1's fresh classifier state, TensorBoard, the
        teachers' EMA) and network 2's fresh classifier state."""
        hooks = super().hooks(ctx)
        peer_classifiers = ctx.model.get_submodule(PEER).get_submodule(CLASSIFIERS)
        return [*hooks, FreshClassifierStateHook(peer_classifiers,
                                                   self.round_options.recluster_period)]
