"""Joint source/target iteration as in ECN's trainer: one epoch is one pass of the source
loader; the target loader starts afresh each epoch and restarts whenever it runs out."""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, Sized


class PairedLoader:
    """Yields ``{"source": source_batch, "target": target_batch}``; ``len`` = source batches."""

    def __init__(self, source: Iterable, target: Iterable) -> None:
        self.source = source
        self.target = target

    def __len__(self) -> int:
        if not isinstance(self.source, Sized):
            raise TypeError("the source loader has no length")
        return len(self.source)

    def __iter__(self) -> Iterator[Dict[str, object]]:
        target = iter(self.target)
        for batch in self.source:
            try:
                target_batch = next(target)
            except StopIteration:
                target = iter(self.target)
                target_batch = next(target, None)
                if target_batch is None:
                    raise ValueError("the target loader yields no batches (fewer target "
                                     "images than one batch with drop_last?)") from None
            yield {"source": batch, "target": target_batch}
