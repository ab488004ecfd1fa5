"""CycleGAN training of one camera pair as a step of the shared trainer.

Data follow CycleGAN's unaligned loader as CamStyle used it: an epoch has max(|A|, |B|) items;
item i pairs the i-th image of a shuffled pass over camera a's images (cycled when a has fewer)
with a uniformly drawn image of camera b; each image is resized to ``load_size``, randomly
cropped to ``crop_size`` and flipped. The sampler draws indices and per-item augmentation seeds
from ``(seed, epoch)``, so every batch, crop and flip is reproducible with any number of
loader workers. The step runs the generator update, then the discriminator update on images
from the pools (:mod:`camstyle.image_pool`), with its own two Adam optimisers. It runs in one
process (no gradient averaging over torch.distributed ranks): pairs are what training splits
over machines (``tools/camstyle.py train --shard``).
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from camstyle.cyclegan_losses import discriminator_loss, generator_losses
from camstyle.cyclegan_model import CycleGAN
from camstyle.data import load_rgb, to_tensor
from camstyle.image_pool import ImagePool
from uda_reid.data.samplers import EpochBatchSampler
from uda_reid.engine.trainer import BatchStream, TrainStep

PairItem = Tuple[int, int, int]  # (index into A, index into B, augmentation seed)


class UnalignedPairSampler(EpochBatchSampler):
    """Batches of :data:`PairItem`; ``max(num_a, num_b) // batch_size`` batches per epoch."""

    def __init__(self, num_a: int, num_b: int, batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        super().__init__(seed, rank, world_size)
        if min(num_a, num_b) < 1 or max(num_a, num_b) < batch_size:
            raise ValueError(f"a camera pair with {num_a} and {num_b} images cannot fill a "
                             f"batch of {batch_size} (CAMSTYLE.CYCLEGAN.BATCH_SIZE)")
        self.num_a, self.num_b, self.batch_size = num_a, num_b, batch_size

    def num_epoch_batches(self) -> int:
        return max(self.num_a, self.num_b) // self.batch_size

    def epoch_batches(self, rng: np.random.Generator) -> List[List[PairItem]]:
        count = self.num_epoch_batches() * self.batch_size
        size = max(self.num_a, self.num_b)
        a = rng.permutation(size)[:count] % self.num_a
        b = rng.integers(0, self.num_b, count)
        seeds = rng.integers(0, 2 ** 31 - 1, count)
        items = list(zip(a.tolist(), b.tolist(), seeds.tolist()))
        return [items[i:i + self.batch_size] for i in range(0, count, self.batch_size)]


def random_crop_flip(image: Tensor, crop_size: Tuple[int, int], flip: bool,
                     rng: np.random.Generator) -> Tensor:
    """A uniformly placed (3, h, w) crop of (3, H, W) ``image``, mirrored with probability 1/2
    when ``flip``."""
    height, width = crop_size
    top = int(rng.integers(0, image.shape[1] - height + 1))
    left = int(rng.integers(0, image.shape[2] - width + 1))
    image = image[:, top:top + height, left:left + width]
    return image.flip(-1) if flip and rng.random() < 0.5 else image


class CameraPairImages(Dataset):
    """item :data:`PairItem` -> ``{"a": (3, h, w), "b": (3, h, w)}`` in [-1, 1]."""

    def __init__(self, a_paths: Sequence[str], b_paths: Sequence[str],
                 load_size: Tuple[int, int], crop_size: Tuple[int, int], flip: bool) -> None:
        if crop_size[0] > load_size[0] or crop_size[1] > load_size[1]:
            raise ValueError(f"CAMSTYLE.CYCLEGAN.CROP_SIZE {tuple(crop_size)} exceeds LOAD_SIZE "
                             f"{tuple(load_size)}")
        self.a_paths, self.b_paths = list(a_paths), list(b_paths)
        self.load_size, self.crop_size, self.flip = tuple(load_size), tuple(crop_size), flip

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def __getitem__(self, item: PairItem) -> Dict[str, Tensor]:
        ia, ib, seed = item
        rng = np.random.default_rng(seed)
        return {key: random_crop_flip(to_tensor(load_rgb(path), self.load_size),
                                      self.crop_size, self.flip, rng)
                for key, path in (("a", self.a_paths[ia]), ("b", self.b_paths[ib]))}


def _set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(flag)


class CycleGANStep(TrainStep):
    """One CycleGAN iteration on a batch ``{"a", "b"}``: G update, then D update from pools."""

    owns_updates = True

    def __init__(self, model: CycleGAN, loader: Iterable, *, lr: float,
                 betas: Tuple[float, float], lambda_cycle: float, lambda_identity: float,
                 pool_size: int, device: torch.device | str = "cpu") -> None:
        self.stream = BatchStream(loader, device)
        self.device = torch.device(device)
        self.g_optimizer = torch.optim.Adam(
            itertools.chain(*(g.parameters() for g in model.generators())), lr,
            betas=tuple(betas))
        self.d_optimizer = torch.optim.Adam(
            itertools.chain(*(d.parameters() for d in model.discriminators())), lr,
            betas=tuple(betas))
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)

    @classmethod
    def from_config(cls, cg: Any, model: CycleGAN, loader: Iterable,
                    device: torch.device | str = "cpu") -> "CycleGANStep":
        """From the CAMSTYLE.CYCLEGAN section."""
        return cls(model, loader, lr=cg.LR, betas=cg.BETAS, lambda_cycle=cg.LAMBDA_CYCLE,
                   lambda_identity=cg.LAMBDA_IDENTITY, pool_size=cg.POOL_SIZE, device=device)

    def begin_epoch(self, epoch: int) -> None:
        self.stream.begin_epoch(epoch)

    def optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.g_optimizer, self.d_optimizer]

    def run(self, model: nn.Module) -> Dict[str, Tensor]:
        batch = self.stream.next()
        real_a, real_b = batch["a"], batch["b"]
        fake_b, fake_a = model.g_ab(real_a), model.g_ba(real_b)
        identity = self.lambda_identity > 0
        _set_requires_grad(model.discriminators(), False)
        g_terms = generator_losses(
            fake_b_scores=model.d_b(fake_b), fake_a_scores=model.d_a(fake_a),
            real_a=real_a, rec_a=model.g_ba(fake_b), real_b=real_b, rec_b=model.g_ab(fake_a),
            same_a=model.g_ba(real_a) if identity else real_a,
            same_b=model.g_ab(real_b) if identity else real_b,
            lambda_cycle=self.lambda_cycle, lambda_identity=self.lambda_identity)
        self.g_optimizer.zero_grad(set_to_none=True)
        sum(g_terms.values()).backward()
        self.g_optimizer.step()
        _set_requires_grad(model.discriminators(), True)
        d_b = discriminator_loss(model.d_b(real_b), model.d_b(self.pool_b.query(fake_b)))
        d_a = discriminator_loss(model.d_a(real_a), model.d_a(self.pool_a.query(fake_a)))
        self.d_optimizer.zero_grad(set_to_none=True)
        (d_a + d_b).backward()
        self.d_optimizer.step()
        losses = {name: value.detach() for name, value in g_terms.items()}
        losses.update({"D/a": d_a.detach(), "D/b": d_b.detach()})
        return losses

    def state_dict(self) -> Dict[str, Any]:
        return {"stream": self.stream.state_dict(), "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(),
                "pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)


@torch.no_grad()
def pair_sample_grid(model: CycleGAN, images_a: Tensor, images_b: Tensor) -> Tensor:
    """Rows: each a-image (K, 3, H, W) with G_ab of it and the round trip back, then each
    b-image with G_ba and back. Returns a (3, H', W') grid in [0, 1]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for real, forward, backward in ((images_a, model.g_ab, model.g_ba),
                                    (images_b, model.g_ba, model.g_ab)):
        real = real.to(device)
        fake = forward(real)
        rows.append(torch.stack([real, fake, backward(fake)], dim=1).flatten(0, 1))
    model.train(was_training)
    return (make_grid(torch.cat(rows).cpu(), nrow=3, padding=2, pad_value=1.0) + 1) / 2


def sample_batch(paths: Sequence[str], count: int, size: Tuple[int, int]) -> Tensor:
    """The first ``count`` images of ``paths`` at ``size`` = (H, W), (K, 3, H, W)."""
    return torch.stack([to_tensor(load_rgb(path), size) for path in list(paths)[:count]])
