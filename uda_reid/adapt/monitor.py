"""The pipeline's monitoring of a method's pseudo-labels against the hidden target identities.

The method reports its labels (:meth:`AdaptMethod.pseudo_labels`); :class:`LabelQualityHook`
(registered by the pipeline, out of the method's reach) scores them after every epoch and
puts the scores into the trainer's event storage (TensorBoard) and the stage's
``label_quality`` in ``results.json``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from uda_reid.adapt.label_quality import label_quality
from uda_reid.engine.hooks import HookBase

SCORES = ("nmi", "ari", "pairwise_precision", "pairwise_recall", "pairwise_f")


class LabelQualityHook(HookBase):
    """After every epoch: ``report() -> (H, N)`` pseudo-labels (or ``None``) scored against
    ``identities`` (N,); one record ``{"epoch", "granularities": [scores per row]}`` per
    epoch, and ``pseudo_labels/g<h>_<score>`` scalars put into the trainer's storage."""

    def __init__(self, report: Callable[[], Optional[np.ndarray]],
                 identities: np.ndarray) -> None:
        self.report = report
        self.identities = np.asarray(identities, dtype=np.int64)
        self.rounds: List[Dict[str, Any]] = []

    def after_epoch(self) -> None:
        labels = self.report()
        if labels is None:
            return
        epoch = self.trainer.epoch + 1
        scores = [label_quality(row, self.identities) for row in np.atleast_2d(labels)]
        self.rounds.append({"epoch": epoch, "granularities": scores})
        for h, values in enumerate(scores):
            for key in SCORES:
                self.trainer.storage.put_scalar(f"pseudo_labels/g{h}_{key}", values[key],
                                                epoch)

    def state_dict(self) -> Dict[str, Any]:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rounds = list(state["rounds"])
