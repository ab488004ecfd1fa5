"""StarGAN generator / discriminator: shapes, camera conditioning, input checks."""
import pytest
import torch

from camstyle.model import Discriminator, Generator, camera_onehot


@pytest.mark.parametrize("upsample", ["deconv", "resize"])
def test_generator_keeps_shape_and_range(upsample):
    torch.manual_seed(0)
    g = Generator(num_cameras=3, conv_dim=4, repeat_num=1, upsample=upsample)
    x = torch.rand(2, 3, 32, 16) * 2 - 1
    y = g(x, torch.tensor([0, 2]))
    assert y.shape == (2, 3, 32, 16)
    assert y.abs().max() <= 1


def test_changing_target_camera_changes_generator_output():
    torch.manual_seed(0)
    g = Generator(num_cameras=4, conv_dim=4, repeat_num=1)
    x = (torch.rand(1, 3, 16, 8) * 2 - 1).expand(4, -1, -1, -1)
    y = g(x, torch.arange(4))
    for a in range(4):
        for b in range(a + 1, 4):
            assert (y[a] - y[b]).abs().max() > 1e-3, (a, b)
    # the same target gives the same output (no hidden randomness)
    assert torch.allclose(g(x[:1], torch.tensor([2])), y[2:3], atol=1e-6)


def test_skip_generator_starts_as_identity_and_adds_a_camera_dependent_change():
    torch.manual_seed(0)
    g = Generator(num_cameras=3, conv_dim=4, repeat_num=1, skip=True)
    x = torch.rand(3, 3, 16, 8) * 2 - 1
    assert torch.equal(g(x, torch.tensor([0, 1, 2])), x)
    torch.nn.init.normal_(g.main[-2].weight, std=0.5)  # as after some training
    same = x[:1].expand(3, -1, -1, -1)
    y = g(same, torch.arange(3))
    assert y.abs().max() <= 1
    delta = torch.tanh(g.main[:-1](torch.cat(
        [same, torch.eye(3)[:, :, None, None].expand(-1, -1, 16, 8)], dim=1)))
    assert torch.allclose(y, (same + delta).clamp(-1, 1), atol=1e-6)
    assert (y[0] - y[1]).abs().max() > 1e-3 and (y[1] - y[2]).abs().max() > 1e-3


@pytest.mark.parametrize("size,repeat,patch", [((32, 16), 2, (8, 4)), ((64, 32), 4, (4, 2)),
                                               ((128, 64), 6, (2, 1))])
def test_discriminator_patch_map_and_camera_logits_shapes(size, repeat, patch):
    d = Discriminator(num_cameras=5, image_size=size, conv_dim=2, repeat_num=repeat)
    scores, logits = d(torch.zeros(3, 3, *size))
    assert scores.shape == (3, 1, *patch)
    assert logits.shape == (3, 5)


def test_discriminator_rejects_sizes_it_cannot_classify():
    with pytest.raises(ValueError, match="D_REPEAT_NUM"):
        Discriminator(num_cameras=2, image_size=(64, 40), conv_dim=2, repeat_num=4)
    d = Discriminator(num_cameras=2, image_size=(32, 16), conv_dim=2, repeat_num=2)
    with pytest.raises(ValueError, match="built for"):
        d(torch.zeros(1, 3, 16, 16))


def test_camera_onehot_values_and_out_of_range_error():
    assert torch.equal(camera_onehot(torch.tensor([1, 0]), 3),
                       torch.tensor([[0., 1., 0.], [1., 0., 0.]]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        camera_onehot(torch.tensor([3]), 3)


def test_generator_upsampling_choice_is_checked():
    with pytest.raises(ValueError, match="G_UPSAMPLE.*bilinear"):
        Generator(num_cameras=2, upsample="bilinear")
    layers = [type(m).__name__ for m in Generator(2, 4, 1, upsample="resize").main]
    assert "ConvTranspose2d" not in layers and layers.count("Upsample") == 2


def test_projection_critic_starts_camera_blind_then_adds_the_camera_projection():
    torch.manual_seed(0)
    plain = Discriminator(num_cameras=3, image_size=(16, 8), conv_dim=2, repeat_num=2)
    proj = Discriminator(num_cameras=3, image_size=(16, 8), conv_dim=2, repeat_num=2,
                         projection=True)
    proj.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(3, 3, 16, 8) * 2 - 1
    cams = torch.tensor([0, 1, 2])
    assert torch.equal(proj(x, cams)[0], plain(x)[0])  # zero-initialised embedding
    torch.nn.init.normal_(proj.camera_embedding.weight)  # as after some training
    scores, logits = proj(x, cams)
    h = proj.main(x)
    by_hand = proj.critic(h) + torch.einsum("nchw,nc->nhw", h,
                                            proj.camera_embedding.weight[cams])[:, None]
    assert torch.allclose(scores, by_hand, atol=1e-6)
    assert torch.equal(logits, plain(x)[1])
    same = x[:1].expand(3, -1, -1, -1)
    other = proj(same, cams)[0]
    assert (other[0] - other[1]).abs().max() > 1e-4 and (other[1] - other[2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="D_PROJECTION"):
        proj(x)
