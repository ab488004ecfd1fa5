"""The label guard, attacked as a cheating method would: everything a method can reach (its
context, its batches, its options, the trainer its hooks see) is searched for file names,
dataset folders, configs and identity sequences, and the memory-slot order is checked for
identity information. The pipeline still scores the pseudo-labels a method reports."""
import functools
import re
import types
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score
from torch.utils.data import DataLoader

from camstyle_standins import write_standins
from uda_reid.adapt.guard import GuardedHook, method_inputs, slot_order
from uda_reid.adapt.methods.ecn import ECN
from uda_reid.adapt.pipeline import build_adapt_config, run_adaptation
from uda_reid.adapt.registry import METHODS
from uda_reid.config.root import Config
from uda_reid.data.datasets import build_dataset
from uda_reid.data.loaders import collate
from uda_reid.engine.events import EventStorage
from uda_reid.engine.hooks import HookBase
from tiny_runs import tiny_stage1

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ecn" / "synth-market2synth-duke.yml"
SOURCE, TARGET = "synth-market", "synth-duke"
FILE_NAME = re.compile(r"\d{4}_c\d")  # how Market/Duke-style names start: <pid>_c<camera>


def reachable(*roots):
    """Every object reachable from ``roots`` through attributes, slots, containers, closures,
    default arguments, bound methods and partials (not through modules or classes)."""
    seen, kept, stack = set(), [], list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kept.append(obj)  # keeps ids unique while walking
        if isinstance(obj, (str, bytes, int, float, bool, type(None), types.ModuleType, type,
                            np.ndarray, torch.Tensor, types.BuiltinFunctionType)):
            continue
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack += list(obj)
        if isinstance(obj, types.FunctionType):
            stack += [c.cell_contents for c in obj.__closure__ or ()
                      if c.cell_contents is not None]
            stack += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        elif isinstance(obj, types.MethodType):
            stack += [obj.__self__, obj.__func__]
        elif isinstance(obj, functools.partial):
            stack += [obj.func, obj.args, obj.keywords]
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            stack.append(state)
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))
    return kept


def int_sequences(objects, length):
    """The integer sequences of ``length`` among ``objects`` (lists, tuples, arrays, tensors)."""
    out = []
    for obj in objects:
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
        if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, int) for v in obj):
            obj = np.asarray(obj)
        if isinstance(obj, np.ndarray) and obj.dtype.kind in "iu" and obj.size == length:
            out.append(obj.reshape(-1))
    return out


def pixel_key(img):
    return np.asarray(img.convert("RGB")).tobytes()


class IdentityThief(ECN):
    """ECN that first tries every way to the target identities it can think of, keeping what
    it found; a hook tries again through the trainer it is given."""

    seen = {}

    @classmethod
    def from_config(cls, adapt):
        IdentityThief.seen["options"] = adapt
        return super().from_config(adapt)

    def build_step(self, ctx):
        dataset = ctx.target.dataset(None)
        batch = next(iter(DataLoader(ctx.target.dataset(lambda img: torch.zeros(1)),
                                     batch_size=len(ctx.target), collate_fn=collate)))
        IdentityThief.seen.update(
            ctx=ctx, batch=batch, slot_images=[pixel_key(dataset[i]["images"])
                                               for i in range(len(dataset))],
            styled_batch=next(iter(ctx.target.dataset(None, camstyle=True))))
        return super().build_step(ctx)

    def hooks(self, ctx):
        return [*super().hooks(ctx), TrainerThief()]

    def pseudo_labels(self):
        return IdentityThief.seen.get("oracle")


class TrainerThief(HookBase):
    def after_epoch(self):
        IdentityThief.seen.setdefault("trainers", []).append(self.trainer)


METHODS.register("identity-thief")(IdentityThief)


@pytest.fixture(scope="module")
def thief_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    target = build_dataset(TARGET, str(root), "tiny", 0)
    write_standins(Path(target.root), target.train, target.num_cameras)
    out = tmp_path_factory.mktemp("run")
    cfg = build_adapt_config(
        SOURCE, TARGET, "identity-thief", str(CONFIG), str(out / "adapt"),
        [*tiny_stage1(root, out / "source_models"),
         "ADAPT.SOLVER.IMS_PER_BATCH", "16", "ADAPT.SOLVER.MAX_EPOCH", "2",
         "ADAPT.SOLVER.ITERS_PER_EPOCH", "1", "ADAPT.ECN.TARGET_IMS_PER_BATCH", "16",
         "ADAPT.ECN.CAMSTYLE", "True", "TEST.EVAL_PERIOD", "2"])
    IdentityThief.seen.clear()
    # the true identities of the images the thief was handed, recovered by the test (not the
    # thief) from their pixels, reported back as the thief's "pseudo-labels"
    pid_of = {pixel_key(Image.open(p)): pid
              for p, pid, _, _ in target.train}
    original_build = IdentityThief.build_step

    def build_and_reveal(self, ctx):
        step = original_build(self, ctx)
        IdentityThief.seen["oracle"] = np.asarray(
            [pid_of[key] for key in IdentityThief.seen["slot_images"]])
        return step

    IdentityThief.build_step = build_and_reveal
    try:
        results = run_adaptation(cfg)
    finally:
        IdentityThief.build_step = original_build
    return dict(IdentityThief.seen), target, root, out, results


def test_nothing_a_method_reaches_names_a_file_a_folder_or_a_config(thief_run):
    seen, target, root, _, _ = thief_run
    objects = reachable(seen["ctx"], seen["batch"], seen["styled_batch"], seen["options"],
                        seen["trainers"])
    strings = [o for o in objects if isinstance(o, str)]
    stems = {Path(p).stem for p, _, _, _ in target.train}
    assert len(strings) > 50  # the walk does reach into the model, loaders and options
    assert not [s for s in strings if str(root) in s or FILE_NAME.search(s)
                or Path(s).stem in stems]
    assert not [o for o in objects if isinstance(o, Config) or hasattr(o, "DATASETS")]
    assert set(seen["batch"]) == {"images", "pids", "camids", "indexes"}
    assert set(seen["batch"]["pids"].tolist()) == {-1}


def test_no_identity_sequence_is_reachable_from_a_method(thief_run):
    seen, target, _, _, _ = thief_run
    n = len(target.train)
    truth = [np.asarray([s[1] for s in target.train]), seen["oracle"]]  # file and slot order
    objects = reachable(seen["ctx"], seen["batch"], seen["options"], seen["trainers"])
    source_ids = np.asarray(seen["ctx"].source.pids)  # the source's labels are allowed
    sequences = [s for s in int_sequences(objects, n)
                 if not (len(s) == len(source_ids) and np.array_equal(s, source_ids))]
    assert sequences  # e.g. the cameras and slot indexes are there
    best = max(adjusted_rand_score(t, s) for t in truth for s in sequences)
    assert best < 0.2, best
    assert not any(hasattr(o, "identities") or hasattr(o, "label_quality") for o in objects)


def test_memory_slot_order_carries_no_identity_information(thief_run):
    seen, target, _, _, _ = thief_run
    ids = seen["oracle"]  # the identity in each memory slot
    n = len(ids)
    counts = np.unique(ids, return_counts=True)[1]
    chance = float((counts * (counts - 1)).sum()) / (n * (n - 1))
    adjacent = float(np.mean(ids[1:] == ids[:-1]))
    # sorted by identity (the datasets' own order) adjacent slots agree ~ (n - #ids) / n
    sorted_ids = np.sort(ids)
    assert np.mean(sorted_ids[1:] == sorted_ids[:-1]) > 0.7
    assert adjacent < chance + 4 * np.sqrt(chance * (1 - chance) / (n - 1)), (adjacent, chance)
    assert sorted(seen["batch"]["indexes"].tolist()) == list(range(n))


def test_slot_order_depends_on_the_seed_only():
    assert np.array_equal(slot_order(50, 3), slot_order(50, 3))
    assert not np.array_equal(slot_order(50, 3), slot_order(50, 4))
    assert sorted(slot_order(50, 3)) == list(range(50))


def test_camera_styles_and_cameras_follow_their_slot(thief_run):
    seen, target, _, _, _ = thief_run
    batch = seen["batch"]
    slot_cams = batch["camids"].tolist()
    order = slot_order(len(target.train), 0)
    assert slot_cams == [target.train[i][2] for i in order]
    styled = seen["styled_batch"]
    assert 0 <= styled["camids"] < target.num_cameras and styled["indexes"] == 0


def test_the_pipeline_scores_the_reported_labels_against_the_hidden_identities(thief_run):
    _, _, _, out, results = thief_run
    stage = results["stages"][1]
    # the thief "reported" the true identities in slot order: perfect scores, every epoch
    assert [r["epoch"] for r in stage["label_quality"]] == [1, 2]
    for record in stage["label_quality"]:
        (scores,) = record["granularities"]
        assert scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "adapt"))
    events.Reload()
    assert [e.value for e in events.Scalars("pseudo_labels/g0_ari")] == pytest.approx([1, 1])


def test_method_inputs_are_anonymous_links_in_seeded_order(tmp_path):
    class Split:
        def __init__(self, name, samples):
            self.name, self.train, self.num_cameras = name, samples, 2

    files = []
    for i in range(6):
        path = tmp_path / f"{i % 3:04d}_c{i % 2 + 1}_{i}.jpg"
        path.write_bytes(bytes([i]) * 10)
        files.append((str(path), 100 + i % 3, i % 2, i))
    source, target, ids = method_inputs(Split("s", files), Split("t", files), tmp_path / "in", 7)
    order = slot_order(6, 7)
    assert ids.tolist() == [100 + i % 3 for i in order]
    assert list(target.camids) == [i % 2 for i in order]
    linked = target._files  # the test looks inside; a method has no reason to
    assert [Path(f).name for f in linked] == [f"{s:06d}.jpg" for s in range(6)]
    assert [Path(f).read_bytes() for f in linked] == [bytes([i]) * 10 for i in order]
    assert source.pids == (0, 1, 2, 0, 1, 2) and source.num_classes == 3


def test_a_method_hook_puts_scalars_without_seeing_the_trainers_storage():
    """The trainer's storage also holds the monitoring's label-quality scores: a method's hook
    writes into a storage of its own, which the guard empties into the trainer's."""

    class Counting(HookBase):
        def after_epoch(self):
            self.trainer.storage.put_scalar("pseudo_labels/g0_num_clusters", 7, 3)

    trainer = types.SimpleNamespace(model=None, optimizer=None, epoch=2, iter=5, max_epoch=4,
                                    iters_per_epoch=3, storage=EventStorage())
    trainer.storage.put_scalar("pseudo_labels/g0_nmi", 0.5, 2)
    inner = Counting()
    guarded = GuardedHook(inner)
    guarded.trainer = trainer
    guarded.after_epoch()
    assert inner.trainer.storage is not trainer.storage and inner.trainer.epoch == 2
    assert inner.trainer.storage.pop_scalars() == []
    assert trainer.storage.pop_scalars() == [("pseudo_labels/g0_nmi", 0.5, 2),
                                             ("pseudo_labels/g0_num_clusters", 7.0, 3)]
