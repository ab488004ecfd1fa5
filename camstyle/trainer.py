"""StarGAN training: one D step per iteration, one G step every n_critic, resumable.

The step follows StarGAN's single-dataset loop (yunjey/stargan ``solver.py``): D sees real
images (adversarial + camera classification of the real camera), translated images (detached)
and the gradient penalty at random interpolates, in one backward; every ``n_critic``-th
iteration G is updated with the adversarial, target-camera classification and cycle terms.
Target cameras are drawn uniformly among the *other* cameras of each image (the images to
generate are exactly those). A projection critic scores real images with their own camera
and translations and interpolates with the target camera. Learning rates decay linearly to zero
over the last ``lr_decay_iters`` iterations, as the StarGAN paper states.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.utils import make_grid, save_image

from camstyle import losses
from camstyle.data import CameraImageDataset, load_rgb, to_tensor
from camstyle.model import Discriminator, Generator
from uda_reid.engine.seed import get_rng_states, set_rng_states
from uda_reid.utils.atomic import atomic_path, atomic_save
from uda_reid.utils.safe_load import load_weights_file


def lr_factor(iteration: int, max_iters: int, decay_iters: int) -> float:
    """LR multiplier for the step with 0-based ``iteration``: 1, then linear to 0 at the end."""
    start = max_iters - decay_iters
    if decay_iters <= 0 or iteration < start:
        return 1.0
    return max(0.0, (max_iters - iteration) / decay_iters)


def random_other_cameras(camids: torch.Tensor, num_cameras: int,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """For each camid (N,), a camera drawn uniformly from the others (N,); needs >= 2 cameras."""
    if num_cameras < 2:
        raise ValueError(f"camera transfer needs at least 2 cameras, got {num_cameras}")
    shift = torch.randint(1, num_cameras, camids.shape, generator=generator)
    return (camids + shift.to(camids.device)) % num_cameras


class StarGANTrainer:
    """Owns G, D and their Adam optimisers; ``step(images, camids)`` runs one iteration."""

    def __init__(self, generator: Generator, discriminator: Discriminator, *, g_lr: float = 1e-4,
                 d_lr: float = 1e-4, betas: Tuple[float, float] = (0.5, 0.999),
                 lambda_cls: float = 1.0, lambda_rec: float = 10.0, lambda_gp: float = 10.0,
                 n_critic: int = 5, max_iters: int = 200000, lr_decay_iters: int = 100000,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.num_cameras = generator.num_cameras
        self.g_optimizer = torch.optim.Adam(generator.parameters(), g_lr, betas=tuple(betas))
        self.d_optimizer = torch.optim.Adam(discriminator.parameters(), d_lr, betas=tuple(betas))
        self.base_lrs = (g_lr, d_lr)
        self.lambda_cls, self.lambda_rec, self.lambda_gp = lambda_cls, lambda_rec, lambda_gp
        self.n_critic = n_critic
        self.max_iters = max_iters
        self.lr_decay_iters = lr_decay_iters
        self.iteration = 0

    def _set_lrs(self) -> None:
        factor = lr_factor(self.iteration, self.max_iters, self.lr_decay_iters)
        for optimizer, base in zip((self.g_optimizer, self.d_optimizer), self.base_lrs):
            for group in optimizer.param_groups:
                group["lr"] = base * factor

    def discriminator_step(self, real: torch.Tensor, camids: torch.Tensor,
                           targets: torch.Tensor) -> Dict[str, float]:
        """One D update; real (N,3,H,W) in [-1,1], camids/targets (N,)."""
        real_scores, real_logits = self.discriminator(real, camids)
        with torch.no_grad():
            fake = self.generator(real, targets)
        fake_scores, _ = self.discriminator(fake, targets)
        x_hat = losses.interpolate(real, fake, torch.rand(real.shape[0], device=real.device))
        gp = losses.gradient_penalty(self.discriminator(x_hat, targets)[0], x_hat)
        adv = losses.critic_loss(real_scores, fake_scores)
        cls = losses.camera_classification_loss(real_logits, camids)
        loss = adv + self.lambda_cls * cls + self.lambda_gp * gp
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return {"D/adv": adv.item(), "D/cls": cls.item(), "D/gp": gp.item(),
                "D/total": loss.item(),
                "D/cls_acc": (real_logits.argmax(1) == camids).float().mean().item()}

    def generator_step(self, real: torch.Tensor, camids: torch.Tensor,
                       targets: torch.Tensor) -> Dict[str, float]:
        """One G update; real (N,3,H,W) in [-1,1], camids/targets (N,)."""
        fake = self.generator(real, targets)
        fake_scores, fake_logits = self.discriminator(fake, targets)
        adv = losses.generator_adversarial_loss(fake_scores)
        cls = losses.camera_classification_loss(fake_logits, targets)
        rec = losses.cycle_reconstruction_loss(real, self.generator(fake, camids))
        loss = adv + self.lambda_cls * cls + self.lambda_rec * rec
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optimizer.step()
        return {"G/adv": adv.item(), "G/cls": cls.item(), "G/rec": rec.item(),
                "G/total": loss.item()}

    def step(self, images: torch.Tensor, camids: torch.Tensor) -> Dict[str, float]:
        """One iteration (D, and G every n_critic-th); returns the losses it computed."""
        self.generator.train()
        self.discriminator.train()
        self._set_lrs()
        real = images.to(self.device)
        camids = camids.to(self.device).long()
        targets = random_other_cameras(camids.cpu(), self.num_cameras).to(self.device)
        logs = self.discriminator_step(real, camids, targets)
        if (self.iteration + 1) % self.n_critic == 0:
            logs.update(self.generator_step(real, camids, targets))
        logs["lr"] = self.g_optimizer.param_groups[0]["lr"]
        self.iteration += 1
        return logs

    def state_dict(self) -> Dict[str, Any]:
        return {"generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(),
                "iteration": self.iteration}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.iteration = int(state["iteration"])


class _OffsetSampler(Sampler):
    """Yields ``indices[start:]`` (the rest of one epoch's permutation)."""

    def __init__(self, indices: List[int], start: int) -> None:
        self.indices, self.start = indices, start

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices[self.start:])

    def __len__(self) -> int:
        return len(self.indices) - self.start


class BatchStream:
    """Endless shuffled batches (drop_last) whose position survives a restart.

    Epoch ``e`` is the permutation drawn from ``seed + e``; the state is (epoch, batch offset).
    With ``num_workers=0`` a resumed run sees exactly the batches (and flips, drawn from the
    restored global RNG) of an uninterrupted one; with workers, flips are re-seeded per epoch.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0,
                 num_workers: int = 0) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} training images are fewer than the batch size "
                             f"{batch_size} (CAMSTYLE.BATCH_SIZE)")
        self.dataset, self.batch_size = dataset, batch_size
        self.seed, self.num_workers = seed, num_workers
        self.epoch, self.offset = 0, 0
        self._iter: Optional[Iterator] = None

    def _start_epoch(self) -> Iterator:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=gen).tolist()
        loader = DataLoader(self.dataset, self.batch_size, drop_last=True,
                            sampler=_OffsetSampler(order, self.offset * self.batch_size),
                            num_workers=self.num_workers, generator=gen,
                            persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Tuple[torch.Tensor, torch.Tensor]:
        while True:
            if self._iter is None:
                self._iter = self._start_epoch()
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter, self.epoch, self.offset = None, self.epoch + 1, 0
                continue
            self.offset += 1
            return batch

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch, self.offset, self._iter = int(state["epoch"]), int(state["offset"]), None


@torch.no_grad()
def sample_grid(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    """Rows = images (K,3,H,W); columns = the real image, then G(x, c) for every camera c.

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


def save_sample_sheet(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) [0, 1] grid as PNG atomically."""
    with atomic_path(path) as tmp:
        save_image(grid.clamp(0, 1), tmp, format="png")
    return Path(path)


def sample_images(dataset: CameraImageDataset, count: int) -> torch.Tensor:
    """``count`` fixed, unflipped images (K,3,H,W) for sample sheets, spread over the cameras."""
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


def fit(trainer: StarGANTrainer, stream: BatchStream, output_dir: str | Path, *,
        sample_batch: torch.Tensor, log_period: int = 10, sample_period: int = 1000,
        checkpoint_period: int = 10000, extra_state: Optional[Dict[str, Any]] = None,
        progress: bool = True) -> Dict[str, Any]:
    """Train until ``trainer.max_iters``; TensorBoard logs, ``last.pth`` and sample sheets.

    A checkpoint (models, optimisers, iteration, batch position, RNG, cumulative training wall
    and process-CPU seconds, ``extra_state``) is written atomically every ``checkpoint_period``
    iterations and at the end, with ``samples/iter_XXXXXXX.png`` beside it. Returns the final
    summary.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    output_dir = Path(output_dir)
    writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=trainer.iteration)
    seconds = float((extra_state or {}).get("train_seconds", 0.0))
    cpu_seconds = float((extra_state or {}).get("train_cpu_seconds", 0.0))
    logs: Dict[str, float] = {}
    bar = tqdm(total=trainer.max_iters, initial=trainer.iteration, disable=not progress,
               desc="camstyle", dynamic_ncols=True)
    try:
        while trainer.iteration < trainer.max_iters:
            start, cpu_start = time.perf_counter(), time.process_time()
            images, camids = next(stream)
            logs.update(trainer.step(images, camids))
            seconds += time.perf_counter() - start
            cpu_seconds += time.process_time() - cpu_start
            it = trainer.iteration
            bar.update(1)
            if it % log_period == 0 or it == trainer.max_iters:
                for key, value in logs.items():
                    writer.add_scalar(key, value, it)
                bar.set_postfix({k: f"{logs[k]:.3f}" for k in ("D/adv", "G/rec", "G/cls")
                                 if k in logs})
            if it % sample_period == 0:
                writer.add_image("samples", sample_grid(trainer.generator, sample_batch), it)
            if it % checkpoint_period == 0 or it == trainer.max_iters:
                save_checkpoint(trainer, stream, output_dir / "last.pth",
                                {**(extra_state or {}), "train_seconds": seconds,
                                 "train_cpu_seconds": cpu_seconds})
                save_sample_sheet(sample_grid(trainer.generator, sample_batch),
                                  output_dir / "samples" / f"iter_{it:07d}.png")
    finally:
        bar.close()
        writer.close()
    return {"iterations": trainer.iteration, "train_seconds": seconds,
            "train_cpu_seconds": cpu_seconds, "last_losses": logs}


def save_checkpoint(trainer: StarGANTrainer, stream: BatchStream, path: str | Path,
                    extra_state: Dict[str, Any]) -> Path:
    """Atomically write everything needed to resume (and ``extra_state``, e.g. model spec)."""
    state = {**extra_state, "trainer": trainer.state_dict(), "stream": stream.state_dict(),
             "rng": get_rng_states()}
    return atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(trainer: StarGANTrainer, stream: BatchStream, path: str | Path
                    ) -> Dict[str, Any]:
    """Restore trainer, batch position and RNG from ``path``; returns the whole state."""
    state = load_weights_file(path, "CamStyle checkpoint")
    trainer.load_state_dict(state["trainer"])
    stream.load_state_dict(state["stream"])
    set_rng_states(state["rng"])
    return state
