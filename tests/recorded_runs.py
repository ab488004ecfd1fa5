"""What a method is handed in a tools/adapt.py run (its context, options and a blank target
batch), recorded so that tests can check the label guard against it."""
import contextlib

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from test_adapt_guard import FILE_NAME, int_sequences, reachable
from uda_reid.adapt.guard import slot_order
from uda_reid.data.datasets import build_dataset
from uda_reid.data.loaders import collate


@contextlib.contextmanager
def recording(method_cls):
    """Within the block, runs of ``method_cls`` fill the yielded dict with ``ctx``,
    ``options`` (the ADAPT section) and ``batch`` (every target item, images blanked)."""
    seen = {}
    build, from_config = method_cls.build_step, method_cls.from_config.__func__

    def build_step(self, ctx):
        seen["ctx"] = ctx
        blank = ctx.target.dataset(lambda img: torch.zeros(1))  # draws no random number
        seen["batch"] = collate([blank[i] for i in range(len(blank))])
        return build(self, ctx)

    def configured(cls, adapt):
        seen["options"] = adapt
        return from_config(cls, adapt)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(method_cls, "build_step", build_step)
        patch.setattr(method_cls, "from_config", classmethod(configured))
        yield seen


def assert_label_guard_holds(seen, root, target_name):
    """Nothing the method reached names a file or the data folder, and no integer sequence it
    reached (but the source's own labels) agrees with the hidden target identities."""
    target = build_dataset(target_name, str(root), "tiny", 0)
    n = len(target.train)
    hidden = np.asarray([target.train[i][1] for i in slot_order(n, 0)])  # identity per slot
    found = reachable(seen["ctx"], seen["options"], seen["batch"])
    texts = [o for o in found if isinstance(o, str)]
    assert len(texts) > 50  # the walk does reach the model, the loaders and the options
    assert not any(str(root) in t or FILE_NAME.search(t) for t in texts)
    source_ids = np.asarray(seen["ctx"].source.pids)[:n]
    candidates = [s for s in int_sequences(found, n) if not np.array_equal(s, source_ids)]
    assert candidates and max(adjusted_rand_score(hidden, s) for s in candidates) < 0.2
    assert set(seen["batch"]["pids"].tolist()) == {-1}
