"""PairedLoader: epochs follow the source loader, the target loader cycles."""
import pytest

from uda_reid.adapt.paired_loader import PairedLoader


def test_epoch_is_one_source_pass_and_target_restarts_when_exhausted():
    paired = PairedLoader(source=["s0", "s1", "s2", "s3", "s4"], target=["t0", "t1"])
    assert len(paired) == 5
    pairs = [(b["source"], b["target"]) for b in paired]
    assert pairs == [("s0", "t0"), ("s1", "t1"), ("s2", "t0"), ("s3", "t1"), ("s4", "t0")]
    assert [b["target"] for b in paired][:1] == ["t0"]  # a new epoch starts the target afresh


def test_empty_target_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="target loader yields no batches"):
        list(PairedLoader(source=["s0"], target=[]))
