"""StarGAN losses against hand computations; the step's totals and G cadence, LR decay and
target-camera sampling."""
import inspect
import math

import pytest
import torch

from camstyle import losses
from camstyle.model import Discriminator, Generator, StarGAN
from camstyle.stargan_step import StarGANStep, random_other_cameras
from uda_reid.config.sections.camstyle import CamStyleConfig
from uda_reid.engine.lr_schedule import linear_to_zero_factor


def test_critic_and_generator_adversarial_losses_by_hand():
    real = torch.tensor([[1.0, 3.0], [2.0, 2.0]])  # patch scores, mean 2
    fake = torch.tensor([[3.0, 5.0], [4.0, 8.0]])  # mean 5
    assert losses.critic_loss(real, fake).item() == pytest.approx(5 - 2)
    assert losses.generator_adversarial_loss(fake).item() == pytest.approx(-5)


def test_camera_classification_is_mean_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])
    camids = torch.tensor([1, 1])
    expected = (-math.log(3 / 4) - math.log(1 / 3)) / 2
    assert losses.camera_classification_loss(logits, camids).item() == pytest.approx(expected)


def test_cycle_reconstruction_is_mean_absolute_error():
    x = torch.zeros(1, 3, 2, 2)
    rec = torch.zeros(1, 3, 2, 2)
    rec[0, 0, 0, 0], rec[0, 2, 1, 1] = 1.2, -0.6
    assert losses.cycle_reconstruction_loss(x, rec).item() == pytest.approx(1.8 / 12)


def test_interpolate_uses_one_alpha_per_sample():
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    x = losses.interpolate(real, fake, torch.tensor([0.25, 0.75]))
    assert x.requires_grad
    assert torch.equal(x[0], torch.full((1, 2, 2), 0.25))
    assert torch.equal(x[1], torch.full((1, 2, 2), 0.75))


def test_gradient_penalty_on_linear_critic_matches_closed_form_value_and_gradient():
    # critic: 2 patch scores per sample, s_k = w_k . x; d(sum_k s_k)/dx = w_1 + w_2 =: v
    w = torch.tensor([[0.5, -1.0, 2.0, 0.0], [0.5, 0.0, 0.0, 1.0]], requires_grad=True)
    x = torch.randn(3, 4, requires_grad=True)
    gp = losses.gradient_penalty(x @ w.t(), x)
    v = torch.tensor([1.0, -1.0, 2.0, 1.0])
    norm = v.norm().item()  # sqrt(7)
    assert gp.item() == pytest.approx((norm - 1) ** 2, rel=1e-6)
    gp.backward()  # d gp / d w_k = 2 (|v| - 1) v / |v| for both rows
    expected = 2 * (norm - 1) * v / norm
    assert torch.allclose(w.grad, expected.expand(2, -1), atol=1e-6)


def test_gradient_penalty_is_zero_for_unit_gradient():
    x = torch.randn(2, 3, requires_grad=True)
    w = torch.tensor([0.6, 0.8, 0.0])
    assert losses.gradient_penalty(x @ w, x).item() == pytest.approx(0.0, abs=1e-12)


def tiny_stargan() -> StarGAN:
    torch.manual_seed(0)
    return StarGAN(Generator(2, conv_dim=2, repeat_num=1),
                   Discriminator(2, (16, 8), conv_dim=2, repeat_num=2))


def test_discriminator_total_combines_terms_with_lambdas():
    cs = CamStyleConfig(LAMBDA_CLS=0.7, LAMBDA_GP=3.0)
    step = StarGANStep.from_config(cs, tiny_stargan(), [])
    x = torch.rand(2, 3, 16, 8) * 2 - 1
    terms = step.discriminator_step(x, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert step.scalars()["D/total"] == pytest.approx(
        float(terms["D/adv"] + 0.7 * terms["D/cls"] + 3.0 * terms["D/gp"]), rel=1e-5)
    terms = step.generator_step(x, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert step.scalars()["G/total"] == pytest.approx(
        float(terms["G/adv"] + 0.7 * terms["G/cls"] + cs.LAMBDA_REC * terms["G/rec"]), rel=1e-5)


def test_generator_updates_only_every_n_critic_iterations():
    model = tiny_stargan()
    batch = {"images": torch.rand(2, 3, 16, 8) * 2 - 1, "camids": torch.tensor([0, 1])}
    step = StarGANStep.from_config(CamStyleConfig(N_CRITIC=3), model, [batch])
    g_steps = []
    for _ in range(6):
        before = [p.clone() for p in model.generator.parameters()]
        terms = step.run(model)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
        assert moved == ("G/rec" in terms)
        g_steps.append(moved)
    assert g_steps == [False, False, True, False, False, True]


def test_the_step_repeats_no_default_of_the_camstyle_section():
    params = inspect.signature(StarGANStep.__init__).parameters
    tunables = ("g_lr", "d_lr", "betas", "lambda_cls", "lambda_rec", "lambda_gp", "n_critic")
    assert [n for n in tunables if params[n].default is not inspect.Parameter.empty] == []


def test_lr_factor_is_flat_then_linear_to_zero():
    assert linear_to_zero_factor(0, 100, 40) == 1.0
    assert linear_to_zero_factor(59, 100, 40) == 1.0
    assert linear_to_zero_factor(60, 100, 40) == 1.0
    assert linear_to_zero_factor(80, 100, 40) == pytest.approx(0.5)
    assert linear_to_zero_factor(99, 100, 40) == pytest.approx(1 / 40)
    assert linear_to_zero_factor(50, 100, 0) == 1.0


def test_random_other_cameras_never_pick_the_source_and_cover_the_rest():
    torch.manual_seed(0)
    camids = torch.tensor([2] * 2000)
    targets = random_other_cameras(camids, 4)
    assert set(targets.tolist()) == {0, 1, 3}
    counts = torch.bincount(targets, minlength=4).float() / 2000
    assert torch.allclose(counts[[0, 1, 3]], torch.full((3,), 1 / 3), atol=0.05)
    with pytest.raises(ValueError):
        random_other_cameras(torch.tensor([0]), 1)
