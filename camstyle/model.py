"""StarGAN generator and PatchGAN discriminator with an auxiliary camera classifier.

Architecture as described in StarGAN (Choi et al., CVPR 2018, appendix): G = 7x7 conv, two
stride-2 down-sampling convs, residual blocks, two stride-2 transposed convs, 7x7 conv, tanh,
with instance norm and ReLU; the target domain (here: camera) enters as a one-hot map
concatenated to the image. D = stride-2 4x4 convs with leaky ReLU (slope 0.01), a 3x3 conv
giving the real/fake patch map and a conv over the whole remaining map giving camera logits.
Images are in [-1, 1].
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def camera_onehot(camids: torch.Tensor, num_cameras: int) -> torch.Tensor:
    """One-hot camera codes: camids (N,) long, 0-based -> (N, num_cameras) float."""
    if camids.numel() and (int(camids.min()) < 0 or int(camids.max()) >= num_cameras):
        raise ValueError(f"camera ids must lie in [0, {num_cameras}), got "
                         f"{sorted(set(camids.tolist()))}")
    return F.one_hot(camids.long(), num_cameras).float()


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True)


class ResidualBlock(nn.Module):
    """x + (conv3x3-IN-ReLU-conv3x3-IN)(x); shape-preserving (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), _norm(channels), nn.ReLU(True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


UPSAMPLING = ("deconv", "resize")


def _upsampling(in_channels: int, out_channels: int, mode: str) -> list:
    """x2 up-sampling layers: StarGAN's 4x4 stride-2 transposed conv (``deconv``), or a
    nearest-neighbour resize then a 3x3 conv (``resize``; no checkerboard artefacts, Odena et
    al., Distill 2016)."""
    if mode == "deconv":
        return [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    return [nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)]


class Generator(nn.Module):
    """StarGAN generator: G(x (N,3,H,W), target camids (N,)) -> (N,3,H,W) in [-1, 1].

    H and W must be divisible by 4 (two down-sampling steps). With ``skip`` (ours, not
    StarGAN's) the network's tanh output is a change added to the input image, clamped to
    [-1, 1], and its last convolution starts at zero, so G starts as the identity map and
    only has to learn the camera's style (the content is kept from the first step).
    ``upsample``: see :func:`_upsampling`.
    """

    def __init__(self, num_cameras: int, conv_dim: int = 64, repeat_num: int = 6,
                 skip: bool = False, upsample: str = "deconv") -> None:
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"CAMSTYLE.G_UPSAMPLE must be one of {UPSAMPLING}, got {upsample!r}")
        self.num_cameras = num_cameras
        self.skip = skip
        layers = [nn.Conv2d(3 + num_cameras, conv_dim, 7, 1, 3, bias=False), _norm(conv_dim),
                  nn.ReLU(True)]
        dim = conv_dim
        for _ in range(2):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=False), _norm(dim * 2), nn.ReLU(True)]
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [*_upsampling(dim, dim // 2, upsample), _norm(dim // 2), nn.ReLU(True)]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        if skip:
            nn.init.zeros_(layers[-2].weight)

    def forward(self, x: torch.Tensor, target_camids: torch.Tensor,
                source_camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``source_camids`` is accepted (the camera translator call of
        :mod:`camstyle.translators`) and not needed: the target code alone steers G."""
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"Generator input height and width must be divisible by 4, "
                             f"got {tuple(x.shape[-2:])}")
        code = camera_onehot(target_camids, self.num_cameras).to(x)
        code = code[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        out = self.main(torch.cat([x, code], dim=1))
        return (x + out).clamp(-1.0, 1.0) if self.skip else out


class Discriminator(nn.Module):
    """PatchGAN critic with camera classifier.

    forward(x (N,3,H,W), camids (N,) or None) -> (critic map (N,1,H/2^r,W/2^r), camera logits
    (N,num_cameras)), r = repeat_num; H and W must be divisible by 2^r.

    With ``projection`` (ours, not StarGAN's) the critic is also told which camera an image
    claims to come from: every patch score gets the inner product of a learnt camera embedding
    with that patch's features (the projection discriminator of Miyato & Koyama, ICLR 2018, per
    patch), so ``camids`` is required. StarGAN's critic is camera-blind and only its auxiliary
    classifier, trained on real images alone, judges the camera; a generator can satisfy that
    classifier with changes an independent classifier does not accept. A projection critic
    is trained on the translated images too, so what gives their source camera away is what it
    learns to see.
    """

    def __init__(self, num_cameras: int, image_size: Tuple[int, int], conv_dim: int = 64,
                 repeat_num: int = 6, projection: bool = False) -> None:
        super().__init__()
        height, width = image_size
        step = 2 ** repeat_num
        if height % step or width % step:
            raise ValueError(f"Discriminator: image size {tuple(image_size)} must be divisible by "
                             f"2**D_REPEAT_NUM = {step}")
        self.image_size = (height, width)
        layers = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.critic = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        self.classifier = nn.Conv2d(dim, num_cameras, (height // step, width // step), bias=False)
        self.camera_embedding = nn.Embedding(num_cameras, dim) if projection else None
        if projection:
            nn.init.zeros_(self.camera_embedding.weight)

    @property
    def projection(self) -> bool:
        return self.camera_embedding is not None

    def forward(self, x: torch.Tensor, camids: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"Discriminator built for {self.image_size}, "
                             f"got {tuple(x.shape[-2:])}")
        h = self.main(x)
        scores = self.critic(h)
        if self.projection:
            if camids is None:
                raise ValueError("a projection critic (CAMSTYLE.D_PROJECTION) needs the cameras "
                                 "the images claim to come from")
            code = self.camera_embedding(camids.long())  # (N, dim)
            scores = scores + (h * code[:, :, None, None]).sum(1, keepdim=True)
        return scores, self.classifier(h).flatten(1)


class StarGAN(nn.Module):
    """The generator and the critic trained together: the module the shared trainer trains
    and checkpoints (state keys ``generator.*`` and ``discriminator.*``)."""

    def __init__(self, generator: Generator, discriminator: Discriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    @property
    def num_cameras(self) -> int:
        return self.generator.num_cameras
