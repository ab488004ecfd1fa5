"""PK identity sampler and the transform pipeline."""
from collections import Counter

import pytest
import torch
from PIL import Image

from uda_reid.config import load_config
from uda_reid.data.samplers import PKBatchSampler
from uda_reid.data.transforms import build_transforms, build_transforms_from_config


def labels_with_sizes(sizes):
    return [pid for pid, n in enumerate(sizes) for _ in range(n)]


def test_pk_batches_have_p_ids_times_k_images():
    labels = labels_with_sizes([5, 6, 4, 8, 7, 5, 9, 4])
    sampler = PKBatchSampler(labels, batch_size=8, num_instances=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    seen = set()
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 2 and set(counts.values()) == {4}
        seen |= set(counts)
        assert all(counts[labels[i]] == 4 for i in batch)
        for pid in counts:  # no image repeated when the id has >= K images
            members = [i for i in batch if labels[i] == pid]
            assert len(set(members)) == 4
    assert seen == set(range(8))  # every identity once per epoch


def test_ids_with_fewer_than_k_images_are_sampled_with_replacement_and_outliers_skipped():
    labels = [0, 0, 1, 1, 1, 1, -1, -1]
    batch = next(iter(PKBatchSampler(labels, batch_size=8, num_instances=4, seed=1)))
    counts = Counter(labels[i] for i in batch)
    assert counts == {0: 4, 1: 4}
    assert set(i for i in batch if labels[i] == 0) <= {0, 1}


def test_epoch_seed_determinism_and_ddp_ranks_are_disjoint():
    labels = labels_with_sizes([4] * 12)
    a = PKBatchSampler(labels, 8, 4, seed=3)
    b = PKBatchSampler(labels, 8, 4, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    ranks = [PKBatchSampler(labels, 8, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    parts = [list(s) for s in ranks]
    assert parts[0] + parts[1] != [] and not set(map(tuple, parts[0])) & set(map(tuple, parts[1]))
    a.set_epoch(0)
    assert sorted(map(tuple, parts[0] + parts[1])) == sorted(map(tuple, list(a)))


def test_bad_batch_shape_is_an_error():
    with pytest.raises(ValueError, match="NUM_INSTANCE"):
        PKBatchSampler([0, 1], 6, 4)
    with pytest.raises(ValueError, match="identities"):
        PKBatchSampler([0, 0, 0, 0], 8, 4)


def test_transforms_shapes_normalisation_and_flip():
    img = Image.new("RGB", (40, 90), (255, 0, 0))
    test_tf = build_transforms((64, 32), is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = test_tf(img)
    assert out.shape == (3, 64, 32)
    assert torch.allclose(out[0], torch.ones(64, 32)) and torch.allclose(out[1], -torch.ones(64, 32))
    half = Image.new("RGB", (32, 64))
    half.paste((255, 255, 255), (0, 0, 16, 64))
    flip = build_transforms((64, 32), True, flip_prob=1.0, padding=0, mean=(0,) * 3,
                            std=(1,) * 3)(half)
    assert flip[0, :, 20:].min() > 0.9 and flip[0, :, :12].max() < 0.1
    cfg = load_config(None, ["INPUT.SIZE_TRAIN", "(64, 32)", "INPUT.REA.ENABLED", "True",
                             "INPUT.REA.PROB", "1.0", "INPUT.AUTOAUG.ENABLED", "True",
                             "INPUT.AUTOAUG.PROB", "0.5"])
    names = [type(t).__name__ for t in build_transforms_from_config(cfg, True).transforms]
    assert names == ["Resize", "RandomApply", "RandomHorizontalFlip", "Pad", "RandomCrop",
                     "ToTensor", "Normalize", "RandomErasing"]
