"""CycleGAN objectives with the least-squares GAN loss (Mao et al., ICCV 2017), as CycleGAN and
CamStyle train them (Zhu et al., ICCV 2017, eqs. 1-3 and sec. 7.1):

D_x minimises  (mean((D_x(x) - 1)^2) + mean(D_x(x_fake)^2)) / 2, x_fake drawn from the pool;
G minimises    mean((D_b(G_ab(a)) - 1)^2) + mean((D_a(G_ba(b)) - 1)^2)
               + lambda_cycle * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)
               + lambda_identity * lambda_cycle * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1),
with |.|_1 the mean absolute error.
"""
from __future__ import annotations

from typing import Dict

import torch

from camstyle.losses import cycle_reconstruction_loss


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """mean((scores - target)^2) with target 1 for ``real``, else 0; scores of any shape."""
    return ((scores - float(real)) ** 2).mean()


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Half the sum of the real (target 1) and fake (target 0) least-squares terms."""
    return 0.5 * (lsgan_loss(real_scores, True) + lsgan_loss(fake_scores, False))


def generator_losses(*, fake_b_scores: torch.Tensor, fake_a_scores: torch.Tensor,
                     real_a: torch.Tensor, rec_a: torch.Tensor, real_b: torch.Tensor,
                     rec_b: torch.Tensor, same_a: torch.Tensor, same_b: torch.Tensor,
                     lambda_cycle: float, lambda_identity: float) -> Dict[str, torch.Tensor]:
    """The generators' weighted terms (their sum is G's loss).

    ``fake_b_scores`` = D_b(G_ab(a)), ``fake_a_scores`` = D_a(G_ba(b)); ``rec_a`` = G_ba(G_ab(a)),
    ``rec_b`` = G_ab(G_ba(b)); ``same_a`` = G_ba(a), ``same_b`` = G_ab(b); images (N, 3, H, W).
    """
    identity_weight = lambda_identity * lambda_cycle
    return {"G/adv": lsgan_loss(fake_b_scores, True) + lsgan_loss(fake_a_scores, True),
            "G/cycle": lambda_cycle * (cycle_reconstruction_loss(real_a, rec_a)
                                       + cycle_reconstruction_loss(real_b, rec_b)),
            "G/identity": identity_weight * (cycle_reconstruction_loss(real_a, same_a)
                                             + cycle_reconstruction_loss(real_b, same_b))}
