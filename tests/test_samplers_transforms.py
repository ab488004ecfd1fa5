"""Batch samplers (PK, random; DDP shares, resume), loaders and the transform pipeline."""
from collections import Counter

import numpy as np

import pytest
import torch
from PIL import Image

from uda_reid.config import load_config
from uda_reid.data.loaders import build_shuffled_loader, build_test_loader, build_train_loader
from uda_reid.data.samplers import PKBatchSampler, RandomBatchSampler, build_batch_sampler
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
    assert torch.allclose(out[0], torch.ones(64, 32))
    assert torch.allclose(out[1], -torch.ones(64, 32))
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


def single_process_batches(sampler_cls, labels, *args, epoch=0, **kw):
    sampler = sampler_cls(labels, *args, rank=0, world_size=1, **kw)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_ranks_get_equal_disjoint_shares_of_the_same_epoch(world_size):
    labels = labels_with_sizes([3, 5, 4, 6, 2, 4, 5, 4, 7, 3, 4, 5, 6])  # 13 ids -> 6 batches
    full = single_process_batches(PKBatchSampler, labels, 4, 2, seed=5, epoch=1)
    assert len(full) == 6
    parts = []
    for rank in range(world_size):
        sampler = PKBatchSampler(labels, 4, 2, seed=5, rank=rank, world_size=world_size)
        sampler.set_epoch(1)
        parts.append(list(sampler))
        assert len(parts[-1]) == len(sampler) == 6 // world_size  # ranks stay in step
    assert [b for rank_batches in zip(*parts) for b in rank_batches] == \
        full[:6 // world_size * world_size]


def test_sampler_state_dict_restores_the_epoch_order():
    labels = labels_with_sizes([4] * 12)
    a = PKBatchSampler(labels, 8, 4, seed=3)
    a.set_epoch(7)
    b = PKBatchSampler(labels, 8, 4, seed=3)
    b.load_state_dict(a.state_dict())
    assert list(b) == list(a) and b.epoch == 7
    with pytest.raises(ValueError, match="seed"):
        PKBatchSampler(labels, 8, 4, seed=4).load_state_dict(a.state_dict())


def test_random_sampler_covers_each_labelled_image_at_most_once_per_epoch():
    labels = [0, 1, -1, 2, 3, 4, -1, 5, 6, 7, 8]  # 9 labelled images -> 3 batches of 3
    sampler = RandomBatchSampler(labels, 3, seed=0)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert len(batches) == len(sampler) == 3 and all(len(b) == 3 for b in batches)
    assert len(set(flat)) == 9 and 2 not in flat and 6 not in flat
    assert batches != single_process_batches(RandomBatchSampler, labels, 3, seed=0, epoch=1)
    with pytest.raises(ValueError, match="DATALOADER.SAMPLER"):
        build_batch_sampler("balanced", labels, 3, 1)


def test_shuffled_loader_draws_the_batches_of_its_definition_and_of_the_old_sampler():
    # the definition: permutation from default_rng([seed, epoch]), cut into full batches, rank r
    # takes batches r, r + world, ...
    order = np.random.default_rng([7, 2]).permutation(11)
    expected = order[:9].reshape(3, 3).tolist()
    items = [{"images": torch.zeros(1), "indexes": i} for i in range(11)]
    loader = build_shuffled_loader(items, 3, seed=7)
    loader.batch_sampler.set_epoch(2)
    assert list(loader.batch_sampler) == expected
    # recorded from adapt/sampling.py's ShuffledBatchSampler(11, 3, seed=7), epoch 2, before
    # it was folded into RandomBatchSampler
    assert expected == [[1, 5, 3], [4, 6, 10], [0, 8, 2]]
    assert [b["indexes"].tolist() for b in loader] == expected  # the items, collated
    rank1 = RandomBatchSampler([0] * 11, 3, seed=7, rank=1, world_size=2)
    rank1.set_epoch(2)
    assert list(rank1) == [[4, 6, 10]]


def write_samples(folder, specs):
    samples = []
    for i, (pid, cam, colour) in enumerate(specs):
        path = folder / f"{i:02d}.jpg"
        Image.new("RGB", (16, 32), colour).save(path)
        samples.append((str(path), pid, cam, i))
    return samples


def test_train_loader_batches_follow_the_contract_and_pseudo_labels(tmp_path):
    samples = write_samples(tmp_path, [(pid, pid % 3, (40 * pid, 0, 0)) for pid in range(4)
                                       for _ in range(2)])
    tf = build_transforms((32, 16), is_train=False)
    pseudo = [7 - s[1] if s[1] < 3 else -1 for s in samples]  # id 3 becomes an outlier
    loader = build_train_loader(samples, tf, batch_size=4, num_instances=2, labels=pseudo)
    batches = list(loader)
    assert len(batches) == 1  # 3 pseudo-identities, 2 per batch
    batch = batches[0]
    assert set(batch) == {"images", "pids", "camids", "indexes", "paths"}
    assert batch["images"].shape == (4, 3, 32, 16) and batch["images"].dtype == torch.float32
    assert batch["pids"].dtype == batch["camids"].dtype == batch["indexes"].dtype == torch.long
    by_index = {s[3]: s for s in samples}
    for pid, cam, index, path in zip(batch["pids"].tolist(), batch["camids"].tolist(),
                                     batch["indexes"].tolist(), batch["paths"]):
        assert pid == pseudo[index] and pid in (5, 6, 7)  # pseudo-labels, not true ids
        assert (path, cam) == (by_index[index][0], by_index[index][2])


def test_test_loader_yields_query_then_gallery_in_order(tmp_path):
    samples = write_samples(tmp_path, [(1, 0, (255, 0, 0)), (2, 1, (0, 255, 0)),
                                       (1, 1, (0, 0, 255)), (2, 0, (9, 9, 9)), (0, 2, (0, 0, 0))])
    loader, num_query = build_test_loader(samples[:2], samples[2:],
                                          build_transforms((32, 16), False), batch_size=2)
    batches = list(loader)
    assert num_query == 2 and [len(b["paths"]) for b in batches] == [2, 2, 1]
    assert [p for b in batches for p in b["paths"]] == [s[0] for s in samples]
    assert torch.cat([b["pids"] for b in batches]).tolist() == [1, 2, 1, 2, 0]


def test_padding_crop_shifts_and_erasing_fills_with_zero():
    torch.manual_seed(0)
    img = Image.new("RGB", (16, 32), (200, 100, 50))
    plain = build_transforms((32, 16), False, mean=(0.5,) * 3, std=(0.5,) * 3)(img)
    shifted = [build_transforms((32, 16), True, flip_prob=0, padding=4, mean=(0.5,) * 3,
                                std=(0.5,) * 3)(img) for _ in range(8)]
    # a zero-padded border shows up as -1 (black after normalising) in some crops
    assert any((s == -1).all(dim=0).any() for s in shifted)
    erased = build_transforms((32, 16), True, flip_prob=0, padding=0, erasing_prob=1.0,
                              mean=(0.5,) * 3, std=(0.5,) * 3)(img)
    zero = (erased == 0).all(dim=0)
    assert zero.sum() > 0 and torch.equal(erased[:, ~zero], plain[:, ~zero])
