"""StarGAN training as a step of the shared trainer: one D update per iteration, one G update
every ``n_critic``-th.

The step follows StarGAN's single-dataset loop (yunjey/stargan ``solver.py``): D sees real
images (adversarial + camera classification of the real camera), translated images (detached)
and the gradient penalty at random interpolates, in one backward; every ``n_critic``-th
iteration G is updated with the adversarial, target-camera classification and cycle terms.
Target cameras are drawn uniformly among the *other* cameras of each image (the images to
generate are exactly those). A projection critic scores real images with their own camera
and translations and interpolates with the target camera.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from camstyle import losses
from camstyle.data import CameraImageDataset, load_rgb, to_tensor
from camstyle.model import Generator, StarGAN
from uda_reid.engine.trainer import BatchStream, TrainStep


def random_other_cameras(camids: Tensor, num_cameras: int,
                         generator: Optional[torch.Generator] = None) -> Tensor:
    """For each camid (N,), a camera drawn uniformly from the others (N,); needs >= 2 cameras."""
    if num_cameras < 2:
        raise ValueError(f"camera transfer needs at least 2 cameras, got {num_cameras}")
    shift = torch.randint(1, num_cameras, camids.shape, generator=generator)
    return (camids + shift.to(camids.device)) % num_cameras


class StarGANStep(TrainStep):
    """One StarGAN iteration on a batch ``{"images" (N, 3, H, W) in [-1, 1], "camids" (N,)}``
    from ``loader``: it owns G's and D's Adam optimisers; the losses it returns are the
    unweighted terms (``D/adv``, ``D/cls``, ``D/gp`` and, on G iterations, ``G/adv``,
    ``G/cls``, ``G/rec``), the weighted totals and D's camera accuracy are :meth:`scalars`.

    The batch stream spans the trainer's epochs (it is not restarted at each), so it can be
    resumed in the middle of a pass."""

    owns_updates = True

    def __init__(self, model: StarGAN, loader: Iterable, *, g_lr: float, d_lr: float,
                 betas: Tuple[float, float], lambda_cls: float, lambda_rec: float,
                 lambda_gp: float, n_critic: int, device: torch.device | str = "cpu") -> None:
        """The CAMSTYLE section's G_LR, D_LR, BETAS, LAMBDA_*, N_CRITIC (its defaults are
        StarGAN's)."""
        self.stream = BatchStream(loader, device)
        self.model = model
        self.g_optimizer = torch.optim.Adam(model.generator.parameters(), g_lr,
                                            betas=tuple(betas))
        self.d_optimizer = torch.optim.Adam(model.discriminator.parameters(), d_lr,
                                            betas=tuple(betas))
        self.lambda_cls, self.lambda_rec, self.lambda_gp = lambda_cls, lambda_rec, lambda_gp
        self.n_critic = n_critic
        self.iterations = 0
        self._scalars: Dict[str, float] = {}

    @classmethod
    def from_config(cls, cs: Any, model: StarGAN, loader: Iterable,
                    device: torch.device | str = "cpu") -> "StarGANStep":
        """From the CAMSTYLE section."""
        return cls(model, loader, g_lr=cs.G_LR, d_lr=cs.D_LR, betas=cs.BETAS,
                   lambda_cls=cs.LAMBDA_CLS, lambda_rec=cs.LAMBDA_REC, lambda_gp=cs.LAMBDA_GP,
                   n_critic=cs.N_CRITIC, device=device)

    def optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.g_optimizer, self.d_optimizer]

    def discriminator_step(self, real: Tensor, camids: Tensor, targets: Tensor
                           ) -> Dict[str, Tensor]:
        """One D update; real (N, 3, H, W) in [-1, 1], camids/targets (N,)."""
        generator, discriminator = self.model.generator, self.model.discriminator
        real_scores, real_logits = discriminator(real, camids)
        with torch.no_grad():
            fake = generator(real, targets)
        fake_scores, _ = discriminator(fake, targets)
        x_hat = losses.interpolate(real, fake, torch.rand(real.shape[0], device=real.device))
        gp = losses.gradient_penalty(discriminator(x_hat, targets)[0], x_hat)
        adv = losses.critic_loss(real_scores, fake_scores)
        cls = losses.camera_classification_loss(real_logits, camids)
        loss = adv + self.lambda_cls * cls + self.lambda_gp * gp
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        self._scalars["D/total"] = loss.item()
        self._scalars["D/cls_acc"] = (real_logits.argmax(1) == camids).float().mean().item()
        return {"D/adv": adv.detach(), "D/cls": cls.detach(), "D/gp": gp.detach()}

    def generator_step(self, real: Tensor, camids: Tensor, targets: Tensor) -> Dict[str, Tensor]:
        """One G update; real (N, 3, H, W) in [-1, 1], camids/targets (N,)."""
        generator, discriminator = self.model.generator, self.model.discriminator
        fake = generator(real, targets)
        fake_scores, fake_logits = discriminator(fake, targets)
        adv = losses.generator_adversarial_loss(fake_scores)
        cls = losses.camera_classification_loss(fake_logits, targets)
        rec = losses.cycle_reconstruction_loss(real, generator(fake, camids))
        loss = adv + self.lambda_cls * cls + self.lambda_rec * rec
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optimizer.step()
        self._scalars["G/total"] = loss.item()
        return {"G/adv": adv.detach(), "G/cls": cls.detach(), "G/rec": rec.detach()}

    def run(self, model: nn.Module) -> Dict[str, Tensor]:
        batch = self.stream.next()
        real, camids = batch["images"], batch["camids"].long()
        targets = random_other_cameras(camids.cpu(), model.num_cameras).to(real.device)
        terms = self.discriminator_step(real, camids, targets)
        if (self.iterations + 1) % self.n_critic == 0:
            terms.update(self.generator_step(real, camids, targets))
        self.iterations += 1
        return terms

    def scalars(self) -> Dict[str, float]:
        return dict(self._scalars)

    def state_dict(self) -> Dict[str, Any]:
        return {"stream": self.stream.state_dict(), "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(), "iterations": self.iterations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.iterations = int(state["iterations"])


@torch.no_grad()
def sample_grid(generator: Generator, images: Tensor) -> Tensor:
    """Rows = images (K, 3, H, W); columns = the real image, then G(x, c) for every camera c.

    Returns a (3, H', W') grid in [0, 1].
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    images = images.to(device)
    columns = [images]
    for cam in range(generator.num_cameras):
        target = torch.full((images.shape[0],), cam, dtype=torch.long, device=device)
        columns.append(generator(images, target))
    generator.train(was_training)
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: image k, column j
    return (make_grid(tiles.cpu(), nrow=len(columns), padding=2, pad_value=1.0) + 1) / 2


def sample_images(dataset: CameraImageDataset, count: int) -> Tensor:
    """``count`` fixed, unflipped images (K, 3, H, W) for sample sheets, spread over the
    cameras."""
    by_cam: Dict[int, List[str]] = {}
    for path, camid in dataset.samples:
        by_cam.setdefault(camid, []).append(path)
    queues = [paths for _, paths in sorted(by_cam.items())]
    picks: List[str] = []
    while len(picks) < min(count, len(dataset)):
        for queue in queues:
            if queue and len(picks) < count:
                picks.append(queue.pop(0))
    return torch.stack([to_tensor(load_rgb(path), dataset.image_size) for path in picks])
