"""Feature extraction over a test loader (optionally flip-averaged)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, List, Tuple

import torch
from torch import Tensor, nn

from uda_reid.data.samplers import ShardSampler
from uda_reid.models.forward import forward_model, move_batch
from uda_reid.utils.distributed import all_gather_objects, all_gather_rows


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module in eval mode, then restore each one's own flag (so frozen parts
    stay frozen and training parts keep training)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.train(flag)


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, flip: bool = False,
                     device: torch.device | str = "cpu"
                     ) -> Tuple[Tensor, Tensor, Tensor, List[str]]:
    """Embeddings of every image of ``loader`` in eval mode, without gradients.

    Returns ``features`` (N, D) float32 on the CPU, ``pids`` (N,), ``camids`` (N,) and the
    image paths (none for a path-free loader), in loader order. With ``flip`` the embedding is
    the mean of the image's and its horizontally flipped copy's embeddings.

    A loader over this rank's share of a dataset (a :class:`ShardSampler`, as the test loaders
    have under torch.distributed) is extracted here and the shares gathered from every rank, so
    every rank returns the whole dataset in order.
    """
    device = torch.device(device)
    features, pids, camids, paths = [], [], [], []
    with eval_mode(model):
        for batch in loader:
            batch = move_batch(batch, device)
            feats = forward_model(model, batch).float()
            if flip:
                flipped = dict(batch, images=torch.flip(batch["images"], dims=[3]))
                feats = (feats + forward_model(model, flipped).float()) / 2
            features.append(feats.cpu())
            pids.append(batch["pids"].cpu())
            camids.append(batch["camids"].cpu())
            paths.extend(batch.get("paths", ()))
    if not features:
        raise ValueError("The test loader yielded no images")
    out = torch.cat(features), torch.cat(pids), torch.cat(camids)
    if isinstance(getattr(loader, "sampler", None), ShardSampler):
        out = tuple(all_gather_rows(t) for t in out)
        paths = [p for shard in all_gather_objects(paths) for p in shard]
    return (*out, paths)
