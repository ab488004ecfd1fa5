"""Checks shared by the end-to-end tests of memory-based adaptation methods: a tiny
tools/adapt.py run (two short epochs, tiny clustering), a run that records what the method was
handed, the label guard over it, and a run killed in its second epoch then resumed."""
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from test_adapt_guard import FILE_NAME, int_sequences, reachable
from uda_reid.adapt.guard import slot_order
from uda_reid.data.datasets import build_dataset
from uda_reid.data.loaders import collate
from tiny_runs import tiny_stage1

_spec = importlib.util.spec_from_file_location(
    "adapt_tool_method_runs", Path(__file__).resolve().parents[1] / "tools" / "adapt.py")
adapt_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adapt_tool)
# Stage 2 of the tiny runs: Adam, batches of 8, two epochs of two iterations, a clustering
# that finds clusters in the tiny target set, evaluation at the end, a checkpoint every epoch.
TINY_STAGE2 = ("ADAPT.SOLVER.OPT", "Adam", "ADAPT.SOLVER.BASE_LR", "3.5e-4",
               "ADAPT.SOLVER.IMS_PER_BATCH", "8", "ADAPT.SOLVER.MAX_EPOCH", "2",
               "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.SOLVER.STEPS", "[1]",
               "ADAPT.CLUSTER.EPS", "[0.5]", "ADAPT.CLUSTER.K1", "6", "ADAPT.CLUSTER.K2", "2",
               "ADAPT.CLUSTER.MIN_SAMPLES", "2",
               "TEST.EVAL_PERIOD", "2", "ADAPT.SOLVER.CHECKPOINT_PERIOD", "1")


def tiny_adapt_run(method: str, target: str, data_root, cache, out,
                   options: Sequence[str] = ()) -> Dict[str, Any]:
    """``tools/adapt.py`` from synth-market to ``target`` with the tiny stage 1 and stage 2 and
    ``options`` (``KEY VALUE`` items and flags); its results.json."""
    argv = ["--source", "synth-market", "--target", target, "--method", method,
            "--output-dir", str(out), *tiny_stage1(data_root, cache), *TINY_STAGE2, *options]
    assert adapt_tool.main(argv) == 0
    return json.loads((Path(out) / "results.json").read_text())


def recorded_run(method_cls, run: Callable[[], Any]) -> Tuple[Any, Dict[str, Any]]:
    """``run()``'s result and what ``method_cls`` was handed: its context (``ctx``), its
    options (``options``) and the whole target training set as one batch (``batch``)."""
    seen: Dict[str, Any] = {}
    build, from_config = method_cls.build_step, method_cls.from_config.__func__

    def recording_build(self, ctx):
        seen["ctx"] = ctx
        with torch.random.fork_rng():  # a loader draws its seed: leave the run's RNG as it is
            seen["batch"] = next(iter(torch.utils.data.DataLoader(
                ctx.target.dataset(lambda img: torch.zeros(1)), batch_size=len(ctx.target),
                collate_fn=collate)))
        return build(self, ctx)

    def recording_from_config(cls, adapt):
        seen["options"] = adapt
        return from_config(cls, adapt)

    method_cls.build_step = recording_build
    method_cls.from_config = classmethod(recording_from_config)
    try:
        return run(), seen
    finally:
        method_cls.build_step = build
        method_cls.from_config = classmethod(from_config)


def assert_label_guard(seen: Dict[str, Any], data_root, target: str) -> None:
    """Nothing the method was handed names a file or folder, carries the target identities
    (in slot order, SEED 0) or gives a batch a person id."""
    dataset = build_dataset(target, str(data_root), "tiny", 0)
    n = len(dataset.train)
    truth = np.asarray([dataset.train[i][1] for i in slot_order(n, 0)])
    objects = reachable(seen["ctx"], seen["options"], seen["batch"])
    strings = [o for o in objects if isinstance(o, str)]
    assert len(strings) > 50
    assert not [s for s in strings if str(data_root) in s or FILE_NAME.search(s)]
    source = seen["ctx"].source  # None in a run without a source
    sequences = [s for s in int_sequences(objects, n)
                 if source is None or not np.array_equal(s, np.asarray(source.pids)[:n])]
    assert sequences
    assert max(adjusted_rand_score(truth, s) for s in sequences) < 0.2
    assert set(seen["batch"]["pids"].tolist()) == {-1}


def killed_then_resumed(step_cls, run: Callable[..., Any], monkeypatch) -> Any:
    """``run(*extra)`` killed in its second epoch (``step_cls.run`` once ``rounds`` holds two
    records), then ``run("--resume")``'s result."""
    step_run = step_cls.run

    def killed_in_epoch_two(self, model):
        if len(self.rounds) == 2:
            raise KeyboardInterrupt("killed")
        return step_run(self, model)

    monkeypatch.setattr(step_cls, "run", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(step_cls, "run", step_run)
    return run("--resume")
