"""Label guard: the target training set a method receives carries no identities.

Unsupervised domain adaptation may use the target images and their camera ids, never their
person ids. :func:`strip_labels` copies a labelled sample list into :class:`UnlabeledSamples`
(pid -1 in every sample, the ids themselves are not kept anywhere), and
:class:`UnlabeledDataset` is the view of a target dataset handed to a method: training images
and cameras only, with any request for identities raising :class:`LabelAccessError`.
Only the evaluator (query/gallery) and monitoring see target labels.
"""
from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple, overload

Sample = Tuple[str, int, int, int]
UNLABELED = -1


class LabelAccessError(AttributeError):
    """A method asked for target-domain identity labels."""


def _refuse(what: str) -> LabelAccessError:
    return LabelAccessError(f"{what}: target identity labels are hidden from adaptation methods "
                            "(only the evaluator reads them)")


class UnlabeledSamples(Sequence[Sample]):
    """An immutable list of samples ``(img_path, -1, camid, index)``."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples: Tuple[Sample, ...] = tuple(
            (str(path), UNLABELED, int(camid), int(index)) for path, _, camid, index in samples)

    @classmethod
    def _wrap(cls, samples: Tuple[Sample, ...]) -> "UnlabeledSamples":
        out = cls.__new__(cls)
        out._samples = samples
        return out

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> "UnlabeledSamples": ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return UnlabeledSamples._wrap(self._samples[i])
        return self._samples[i]

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    @property
    def pids(self) -> List[int]:
        raise _refuse("UnlabeledSamples.pids")

    @property
    def camids(self) -> List[int]:
        return [s[2] for s in self._samples]

    def __repr__(self) -> str:
        return f"UnlabeledSamples({len(self)} samples, identities hidden)"


def strip_labels(samples: Sequence[Sample]) -> UnlabeledSamples:
    """The samples with pid -1 and index = position 0..N-1 (the memory slot of each image)."""
    for pos, sample in enumerate(samples):
        if len(sample) != 4:
            raise ValueError(f"sample {pos} is {sample!r}; expected (img_path, pid, camid, index)")
    return UnlabeledSamples([(path, UNLABELED, camid, pos)
                             for pos, (path, _, camid, _) in enumerate(samples)])


class UnlabeledDataset:
    """What a method sees of the target domain: name, root, cameras, label-free ``train``."""

    def __init__(self, name: str, root: str, train: UnlabeledSamples, num_cameras: int) -> None:
        self.name = name
        self.root = root
        self.train = train
        self.num_cameras = num_cameras

    @classmethod
    def from_dataset(cls, dataset) -> "UnlabeledDataset":
        """The label-free view of a dataset object (``.name``, ``.root``, ``.train``, ...)."""
        return cls(dataset.name, str(dataset.root), strip_labels(dataset.train),
                   int(dataset.num_cameras))

    @property
    def num_train_pids(self) -> int:
        raise _refuse(f"{self.name}.num_train_pids")

    @property
    def query(self) -> List[Sample]:
        raise _refuse(f"{self.name}.query")

    @property
    def gallery(self) -> List[Sample]:
        raise _refuse(f"{self.name}.gallery")

    def __repr__(self) -> str:
        return (f"UnlabeledDataset({self.name}: {len(self.train)} training images, "
                f"{self.num_cameras} cameras, identities hidden)")
