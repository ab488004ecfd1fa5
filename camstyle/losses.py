"""StarGAN objectives: WGAN-GP adversarial terms, camera classification, cycle reconstruction.

D minimises  -E[D(x)] + E[D(G(x, c'))] + lambda_cls * CE(D_cls(x), c) + lambda_gp * GP;
G minimises  -E[D(G(x, c'))] + lambda_cls * CE(D_cls(G(x, c')), c')
             + lambda_rec * E|x - G(G(x, c'), c)|.
(Choi et al., StarGAN, CVPR 2018, eqs. 1-3, 8 and the WGAN-GP of Gulrajani et al. 2017.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss -mean(D(real)) + mean(D(fake)); scores of any shape (N, ...)."""
    return fake_scores.mean() - real_scores.mean()


def generator_adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean(D(fake)); scores (N, ...)."""
    return -fake_scores.mean()


def camera_classification_loss(logits: torch.Tensor, camids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over cameras: logits (N, C), camids (N,) 0-based."""
    return F.cross_entropy(logits, camids)


def cycle_reconstruction_loss(images: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between (N, 3, H, W) images and their round trip."""
    return (images - reconstructed).abs().mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha * real + (1 - alpha) * fake, alpha (N,) per sample; detached, requires grad."""
    alpha = alpha.view(-1, *([1] * (real.dim() - 1))).to(real)
    return (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)


def gradient_penalty(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """mean_n (||d sum(scores_n) / d inputs_n||_2 - 1)^2 (differentiable, for WGAN-GP).

    scores: critic output (N, ...) computed from ``inputs`` (N, ...), which requires grad.
    For a PatchGAN the patch scores of one sample are summed, as in StarGAN's implementation.
    """
    grads, = torch.autograd.grad(scores, inputs, grad_outputs=torch.ones_like(scores),
                                 create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()
