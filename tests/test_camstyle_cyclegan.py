"""CycleGAN CamStyle: losses by hand, the image pool, the networks, the pair sampler, the LR
decay, and exact resume of a tiny pair run on the shared trainer."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camstyle.cyclegan_losses import discriminator_loss, generator_losses, lsgan_loss
from camstyle.cyclegan_model import (CycleGAN, PatchDiscriminator, ResnetGenerator,
                                     patch_map_size)
from camstyle.cyclegan_step import UnalignedPairSampler
from camstyle.cyclegan_train import build_pair_trainer, camera_pairs, shard_pairs
from camstyle.image_pool import ImagePool
from uda_reid.config import get_default_config
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.lr_schedule import linear_decay_factor
from uda_reid.engine.trainer import Trainer


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_least_squares_gan_terms_by_hand():
    scores = t([0.5, -1.0])
    assert lsgan_loss(scores, True).item() == pytest.approx((0.25 + 4.0) / 2)
    assert lsgan_loss(scores, False).item() == pytest.approx((0.25 + 1.0) / 2)
    # D: half of (real -> 1) + (fake -> 0): 0.5 * ((0 + 1) / 2 + 0.25)
    assert discriminator_loss(t([1.0, 0.0]), t([0.5])).item() == pytest.approx(0.375)


def test_generator_terms_weight_cycle_by_lambda_and_identity_by_its_fraction():
    shape = (1, 1, 1, 2)
    terms = generator_losses(
        fake_b_scores=t([0.0]), fake_a_scores=t([2.0]),
        real_a=t([0.5, -0.5]).view(shape), rec_a=t([0.25, -0.5]).view(shape),
        real_b=t([0.0, 0.0]).view(shape), rec_b=t([1.0, 0.0]).view(shape),
        same_a=t([0.5, 0.5]).view(shape), same_b=t([0.0, -1.0]).view(shape),
        lambda_cycle=10.0, lambda_identity=0.5)
    assert terms["G/adv"].item() == pytest.approx(1.0 + 1.0)
    assert terms["G/cycle"].item() == pytest.approx(10.0 * (0.125 + 0.5))
    assert terms["G/identity"].item() == pytest.approx(0.5 * 10.0 * (0.5 + 0.5))


def test_pool_passes_through_at_size_zero_and_stores_while_filling():
    images = torch.randn(3, 3, 2, 2)
    assert ImagePool(0).query(images) is images
    pool = ImagePool(4)
    assert torch.equal(pool.query(images), images)
    assert len(pool.images) == 3 and all(torch.equal(a, b) for a, b in zip(pool.images, images))


def test_full_pool_swaps_half_the_time_and_loses_no_image():
    torch.manual_seed(0)
    pool = ImagePool(5)
    pool.query(torch.arange(5.0).view(5, 1, 1, 1))
    swaps, queries = 0, 2000
    for k in range(queries):
        new = torch.full((1, 1, 1, 1), 100.0 + k)
        before = sorted(float(x) for x in pool.images)
        out = float(pool.query(new))
        after = sorted(float(x) for x in pool.images)
        # the returned image and the pool together are the old pool plus the new image
        assert sorted(after + [out]) == sorted(before + [100.0 + k])
        swaps += out != 100.0 + k
    assert abs(swaps / queries - 0.5) < 0.05


def test_pool_state_round_trip_continues_identically():
    torch.manual_seed(1)
    pool = ImagePool(3)
    pool.query(torch.randn(4, 3, 2, 2))
    state, rng = pool.state_dict(), torch.get_rng_state()
    expected = pool.query(torch.ones(6, 3, 2, 2))
    restored = ImagePool(3)
    restored.load_state_dict(state)
    torch.set_rng_state(rng)
    assert torch.equal(restored.query(torch.ones(6, 3, 2, 2)), expected)
    with pytest.raises(ValueError, match="size"):
        ImagePool(2).load_state_dict(state)


def test_generator_keeps_shape_and_range_on_reid_sized_images():
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=4, blocks=2, dropout=True)
    out = g(torch.rand(2, 3, 64, 32) * 2 - 1)
    assert out.shape == (2, 3, 64, 32) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 4"):
        g(torch.zeros(1, 3, 30, 32))


def test_three_layer_patchgan_sees_70x70_patches():
    torch.manual_seed(0)
    d = PatchDiscriminator(ndf=2, layers=3)
    for i, layer in enumerate(d.main):  # instance norm couples all positions; drop it here
        if isinstance(layer, nn.InstanceNorm2d):
            d.main[i] = nn.Identity()
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    scores = d(x)
    assert tuple(scores.shape[-2:]) == patch_map_size((128, 128), 3) == (14, 14)
    scores[0, 0, 7, 7].backward()
    rows = torch.nonzero(x.grad[0].abs().sum((0, 2)))
    cols = torch.nonzero(x.grad[0].abs().sum((0, 1)))
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
    with pytest.raises(ValueError, match="D_LAYERS 3"):
        patch_map_size((16, 8), 3)


def test_cyclegan_builds_from_config_with_normal_init():
    cfg = get_default_config().CAMSTYLE.CYCLEGAN
    cfg.NGF, cfg.NDF = 8, 8
    torch.manual_seed(0)
    model = CycleGAN.from_config(cfg)
    weights = torch.cat([m.weight.flatten() for m in model.modules()
                         if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert sum(isinstance(m, nn.Dropout) for m in model.g_ab.modules()) == 9


def test_pair_sampler_epoch_covers_the_larger_camera_and_draws_the_other():
    sampler = UnalignedPairSampler(num_a=3, num_b=7, batch_size=2, seed=5)
    sampler.set_epoch(0)
    items = [item for batch in sampler for item in batch]
    assert len(items) == 6 and len(list(sampler)) == len(sampler) == 3
    assert all(0 <= a < 3 and 0 <= b < 7 for a, b, _ in items)
    assert sorted(np.bincount([a for a, _, _ in items], minlength=3)) == [2, 2, 2]
    again = UnalignedPairSampler(num_a=3, num_b=7, batch_size=2, seed=5)
    again.set_epoch(0)
    assert list(again) == list(sampler)
    again.set_epoch(1)
    assert list(again) != list(sampler)
    with pytest.raises(ValueError, match="CYCLEGAN.BATCH_SIZE"):
        UnalignedPairSampler(num_a=0, num_b=3, batch_size=1)


def test_linear_decay_is_flat_then_steps_down_by_one_over_decay_plus_one():
    factors = [linear_decay_factor(e, 30, 20) for e in range(50)]
    assert factors[:30] == [1.0] * 30
    assert factors[30] == pytest.approx(20 / 21) and factors[49] == pytest.approx(1 / 21)
    assert np.allclose(np.diff(factors[29:]), -1 / 21)


def test_pairs_and_their_shards():
    assert len(camera_pairs(6)) == 15 and len(camera_pairs(8)) == 28
    pairs = camera_pairs(4)
    shards = [shard_pairs(pairs, i, 4) for i in range(4)]
    assert sorted(p for s in shards for p in s) == pairs
    assert [len(s) for s in shards] == [2, 2, 1, 1]


def write_camera_images(folder, per_camera=(3, 2)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for cam, count in enumerate(per_camera):
        paths.append([])
        for k in range(count):
            path = folder / f"{k + 1:04d}_c{cam + 1}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (24, 12, 3), dtype=np.uint8)).save(path)
            paths[-1].append(str(path))
    return paths


def tiny_section():
    cg = get_default_config().CAMSTYLE.CYCLEGAN
    cg.LOAD_SIZE, cg.CROP_SIZE = (20, 12), (16, 8)
    cg.NGF, cg.NDF, cg.G_BLOCKS, cg.D_LAYERS = 2, 2, 1, 1
    cg.EPOCHS, cg.DECAY_EPOCHS, cg.POOL_SIZE, cg.NUM_WORKERS = 2, 2, 2, 0
    cg.SAMPLE_PERIOD, cg.LOG_PERIOD = 2, 1
    return cg


class Crash(HookBase):
    def after_epoch(self):
        if self.trainer.epoch == 1:
            raise KeyboardInterrupt("killed after epoch 2")


def pair_run(cg, paths, out):
    return build_pair_trainer(cg, (0, 1), paths[0], paths[1], out, identity={"x": 1}, seed=3,
                              progress=False)


def test_killed_pair_run_resumes_bit_identically(tmp_path):
    torch.set_num_threads(1)
    cg, paths = tiny_section(), write_camera_images(tmp_path / "images")
    whole, _ = pair_run(cg, paths, tmp_path / "whole")
    whole.train()
    killed, _ = pair_run(cg, paths, tmp_path / "killed")
    killed.register_hooks([Crash()])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    torch.manual_seed(123)  # a resumed process starts from other random states
    resumed, checkpointer = pair_run(cg, paths, tmp_path / "killed")
    resumed.load_state_dict(checkpointer.load("last.pth"))
    assert resumed.start_epoch == 2
    resumed.train()
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for pool in ("pool_a", "pool_b"):
        ours, theirs = getattr(whole.step, pool).images, getattr(resumed.step, pool).images
        assert len(ours) == 2 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    # the last of 2 + 2 epochs runs at 1/3 of the learning rate, for G's and D's optimiser
    assert [o.param_groups[0]["lr"] for o in resumed.optimizers] == \
        pytest.approx([cg.LR / 3, cg.LR / 3])
    assert sorted(p.name for p in (tmp_path / "whole" / "samples").iterdir()) == [
        "epoch_002.png", "epoch_004.png"]


def test_generator_update_leaves_discriminators_without_gradients(tmp_path):
    torch.set_num_threads(1)
    cg, paths = tiny_section(), write_camera_images(tmp_path / "images")
    trainer, _ = pair_run(cg, paths, tmp_path / "run")
    step, model = trainer.step, trainer.model
    d_grads = []
    g_step = step.g_optimizer.step

    def checked_step(*args, **kwargs):
        d_grads.extend(p.grad for d in model.discriminators() for p in d.parameters())
        return g_step(*args, **kwargs)

    step.g_optimizer.step = checked_step
    before = {k: v.clone() for k, v in model.d_a.state_dict().items()}
    step.begin_epoch(0)
    losses = step.run(model)
    assert d_grads and all(g is None for g in d_grads)
    assert set(losses) == {"G/adv", "G/cycle", "G/identity", "D/a", "D/b"}
    assert any(not torch.equal(v, model.d_a.state_dict()[k]) for k, v in before.items())


def test_trainer_takes_an_optimizer_exactly_when_the_step_does_not_own_its_updates(tmp_path):
    cg, paths = tiny_section(), write_camera_images(tmp_path / "images")
    trainer, _ = pair_run(cg, paths, tmp_path / "run")
    assert trainer.optimizer is None and trainer.optimizers == trainer.step.optimizers()
    with pytest.raises(ValueError, match="owns_updates is True"):
        Trainer(trainer.model, torch.optim.SGD(trainer.model.parameters(), 0.1), trainer.step,
                1, 1)
