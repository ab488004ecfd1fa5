"""Label guard: what a method receives of the target domain carries no identities."""
import pytest

from uda_reid.adapt.guard import LabelAccessError, UnlabeledDataset, strip_labels


class FakeDataset:
    name = "synth-duke"
    root = "/data/synth-duke"
    num_cameras = 2
    num_train_pids = 3

    def __init__(self):
        self.train = [(f"/x/{pid:04d}_c{cam + 1}_{i}.jpg", 7000 + pid, cam, i)
                      for i, (pid, cam) in enumerate([(1, 0), (2, 1), (1, 1), (3, 0)])]
        self.query = self.train[:1]
        self.gallery = self.train[1:]


def reachable_ints(obj, seen=None):
    """Every int reachable from ``obj`` through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, int):
        yield obj
    elif isinstance(obj, (list, tuple, set)):
        for item in obj:
            yield from reachable_ints(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from reachable_ints(item, seen)
    elif hasattr(obj, "__dict__"):
        yield from reachable_ints(vars(obj), seen)


def test_unlabeled_samples_have_pid_minus_one_and_keep_cameras_and_indexes():
    unlabeled = strip_labels(FakeDataset().train)
    assert [s[1] for s in unlabeled] == [-1] * 4
    assert [s[2] for s in unlabeled] == [0, 1, 1, 0]
    assert [s[3] for s in unlabeled] == [0, 1, 2, 3]
    assert unlabeled.camids == [0, 1, 1, 0]
    assert [s[1] for s in unlabeled[1:3]] == [-1, -1]


def test_a_method_cannot_read_target_identities():
    view = UnlabeledDataset.from_dataset(FakeDataset())
    for attempt in (lambda: view.num_train_pids, lambda: view.query, lambda: view.gallery,
                    lambda: view.train.pids):
        with pytest.raises(LabelAccessError, match="hidden"):
            attempt()
    # the ids are not kept anywhere inside the view
    assert not {7001, 7002, 7003} & set(reachable_ints(view))
    assert all(s[1] == -1 for s in view.train)


def test_samples_must_be_four_tuples():
    with pytest.raises(ValueError, match="expected \\(img_path, pid, camid, index\\)"):
        strip_labels([("a.jpg", 1, 0)])
