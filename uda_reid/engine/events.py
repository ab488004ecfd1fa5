"""What a training run measures, kept in one place for the writer hooks (progress log,
per-epoch curves, TensorBoard): the trainer fills it, hooks add their scalars, writers read."""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple


class EpochMeans:
    """Means of named scalars over the steps of one epoch (a name a step lacks counts 0)."""

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.count = 0

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def add(self, values: Mapping[str, float]) -> None:
        """One step's values."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def means(self) -> Dict[str, float]:
        return {name: total / self.count for name, total in self.sums.items()}


class EventStorage:
    """``epoch_means``: the current epoch's means of every iteration's losses (with ``total``)
    and step scalars, added by the trainer; :meth:`put_scalar`: a named value at a step (e.g.
    an epoch's pseudo-label counts) that waits until a writer :meth:`pop_scalars` it."""

    def __init__(self) -> None:
        self.epoch_means = EpochMeans()
        self._pending: List[Tuple[str, float, int]] = []

    def put_scalar(self, name: str, value: float, step: int) -> None:
        self._pending.append((name, float(value), int(step)))

    def pop_scalars(self) -> List[Tuple[str, float, int]]:
        """The scalars put since the last call, in order, as ``(name, value, step)``."""
        pending, self._pending = self._pending, []
        return pending
