"""Measured check of a camera StarGAN: does it transfer camera style and keep identity?

1. A camera classifier (small CNN) is trained on the real training images; its accuracy on
   held-out real gallery images shows it has learnt the cameras. It then classifies images
   generated from held-out query images into every other camera: the share assigned to the
   *target* camera is the transfer rate (chance = 1 / cameras).
2. An identity embedding (the same small CNN trained to classify the training identities) is
   used for retrieval on the held-out identities: the rank-1 rate of the real queries against
   the gallery is the reference; the rank-1 rate of their generated versions shows how much
   identity the transfer keeps (chance ~ 1 / gallery identities).
Generated images go through the same path as the generation job (generator size, resize back
to the source size, JPEG encode/decode).
"""
from __future__ import annotations

import io
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from camstyle.data import load_rgb, to_tensor
from camstyle.generate import translate
from camstyle.model import Generator

Sample = Tuple[str, int, int, int]  # (path, pid, camid, index)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (max-pooled between) -> average pool -> (N, 8*width) -> logits."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        channels = 3
        for stage, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += [nn.Conv2d(channels, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(True)]
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> pooled features (N, 8*width)."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def image_tensor(images: Sequence[Image.Image], size: Tuple[int, int]) -> torch.Tensor:
    """PIL images -> (N, 3, H, W) in [-1, 1]."""
    return torch.stack([to_tensor(img, size) for img in images])


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                     width: int = 32, seed: int = 0) -> SmallCNN:
    """Adam + cross-entropy with random flips on (N, 3, H, W) images and (N,) labels."""
    batch_size = min(batch_size, len(images))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallCNN(num_classes, width)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    steps = epochs * (len(images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    model.train()
    step = 0
    while step < steps:
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            x = images[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == steps:
                break
    return model.eval()


@torch.no_grad()
def run_batched(fn, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Apply ``fn`` to (N, ...) images in batches and concatenate."""
    return torch.cat([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def rank1_rate(query: torch.Tensor, query_pids: torch.Tensor, query_cams: torch.Tensor,
               gallery: torch.Tensor, gallery_pids: torch.Tensor, gallery_cams: torch.Tensor
               ) -> float:
    """Share of queries (Q, D) whose most cosine-similar gallery image (G, D) has their id.

    Gallery images with the query's identity *and* camera are skipped (Market-1501 protocol);
    ``query_cams`` are the cameras of the images the queries come from.
    """
    sim = F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).t()
    junk = (query_pids[:, None] == gallery_pids[None]) & (query_cams[:, None] == gallery_cams[None])
    sim = sim.masked_fill(junk, float("-inf"))
    return (gallery_pids[sim.argmax(dim=1)] == query_pids).float().mean().item()


def jpeg_roundtrip(image: Image.Image, quality: int = 95) -> Image.Image:
    """Encode and decode as JPEG (what a generated file goes through)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def spread(samples: Sequence[Sample], count: int) -> List[Sample]:
    """At most ``count`` samples taken evenly over the (name-sorted) list."""
    ordered = sorted(samples, key=lambda s: s[0])
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in picks]


def translated_set(generator: Generator, sources: Sequence[Sample], image_size: Tuple[int, int],
                   classifier_size: Tuple[int, int], jpeg_quality: int = 95
                   ) -> Dict[str, torch.Tensor]:
    """Real images of ``sources`` and their versions in every other camera, as tensors.

    Returns ``real`` (S,3,h,w), ``real_pids``/``real_cams`` (S,), ``fake`` (F,3,h,w) and, per
    fake, ``pids``/``source_cams``/``targets`` (F,), at ``classifier_size`` = (h, w).
    """
    images = [load_rgb(s[0]) for s in sources]
    fakes, rows_all, targets = [], [], []
    for target in range(generator.num_cameras):
        rows = [k for k, s in enumerate(sources) if s[2] != target]
        outs = translate(generator, [images[k] for k in rows], [target] * len(rows), image_size)
        fakes += [jpeg_roundtrip(img, jpeg_quality) for img in outs]
        rows_all += rows
        targets += [target] * len(rows)
    pids = torch.tensor([s[1] for s in sources])
    cams = torch.tensor([s[2] for s in sources])
    rows_t = torch.tensor(rows_all, dtype=torch.long)
    return {"real": image_tensor(images, classifier_size), "real_pids": pids, "real_cams": cams,
            "fake": image_tensor(fakes, classifier_size), "pids": pids[rows_t],
            "source_cams": cams[rows_t], "targets": torch.tensor(targets)}


def identity_keeping(embed, sources: Dict[str, torch.Tensor], gallery: torch.Tensor,
                     gallery_pids: torch.Tensor, gallery_cams: torch.Tensor) -> Dict[str, float]:
    """Rank-1 of the real sources and of their translations against a real gallery."""
    gallery_f = run_batched(embed, gallery)
    return {"rank1_real": rank1_rate(run_batched(embed, sources["real"]), sources["real_pids"],
                                     sources["real_cams"], gallery_f, gallery_pids,
                                     gallery_cams),
            "rank1_generated": rank1_rate(run_batched(embed, sources["fake"]), sources["pids"],
                                          sources["source_cams"], gallery_f, gallery_pids,
                                          gallery_cams),
            "num_real": len(sources["real"]), "num_generated": len(sources["fake"]),
            "gallery_images": len(gallery),
            "chance_rank1": 1.0 / max(1, int(gallery_pids.unique().numel()))}


def evaluate_transfer(generator: Generator, image_size: Tuple[int, int],
                      train: Sequence[Sample], query: Sequence[Sample],
                      gallery: Sequence[Sample], *, classifier_size: Tuple[int, int] = (64, 32),
                      epochs: int = 10, max_queries: int = 300, max_gallery: int = 3000,
                      jpeg_quality: int = 95, seed: int = 0) -> Dict[str, Any]:
    """Camera-transfer rate and identity keeping (see the module docstring) as a dict.

    Identity is measured twice: on held-out identities (query sources, real gallery; an
    open-set test of a small embedding) and on the training identities (training-image sources
    against all training images; closed set, where the embedding is strong). Gallery images of
    the source's identity and camera (the source itself included) never count.
    """
    start = time.perf_counter()
    num_cameras = generator.num_cameras
    train_x = image_tensor([load_rgb(s[0]) for s in train], classifier_size)
    train_cams = torch.tensor([s[2] for s in train])
    pid_index = {pid: i for i, pid in enumerate(sorted({s[1] for s in train}))}
    train_pids = torch.tensor([pid_index[s[1]] for s in train])
    cam_model = train_classifier(train_x, train_cams, num_cameras, epochs=epochs, seed=seed)
    id_model = train_classifier(train_x, train_pids, len(pid_index), epochs=epochs, seed=seed)

    gallery = spread(gallery, max_gallery)
    gallery_x = image_tensor([load_rgb(s[0]) for s in gallery], classifier_size)
    gallery_cams = torch.tensor([s[2] for s in gallery])
    gallery_pids = torch.tensor([s[1] for s in gallery])
    real_cam_acc = (run_batched(cam_model, gallery_x).argmax(1) == gallery_cams).float().mean()

    held_out = translated_set(generator, spread(query, max_queries), image_size,
                              classifier_size, jpeg_quality)
    predicted = run_batched(cam_model, held_out["fake"]).argmax(1)
    targets = held_out["targets"]
    per_target = {str(c + 1): (predicted[targets == c] == c).float().mean().item()
                  for c in range(num_cameras) if (targets == c).any()}
    seen = translated_set(generator, spread(train, max_queries), image_size, classifier_size,
                          jpeg_quality)
    return {
        "num_cameras": num_cameras,
        "chance_camera": 1.0 / num_cameras,
        "camera_classifier": {"train_images": len(train), "epochs": epochs,
                              "input_size": list(classifier_size),
                              "real_heldout_accuracy": real_cam_acc.item(),
                              "real_heldout_images": len(gallery)},
        "transfer": {"sources": "held-out query images, each into every other camera",
                     "num_generated": len(targets), "num_sources": len(held_out["real"]),
                     "target_camera_rate": (predicted == targets).float().mean().item(),
                     "source_camera_rate": (predicted == held_out["source_cams"]
                                            ).float().mean().item(),
                     "per_target_camera_rate": per_target},
        "identity_embedding": "SmallCNN identity classifier (pooled features) on the real "
                              "training images",
        "identity_heldout": identity_keeping(id_model.features, held_out, gallery_x,
                                             gallery_pids, gallery_cams),
        "identity_train_ids": identity_keeping(id_model.features, seen, train_x,
                                               torch.tensor([s[1] for s in train]), train_cams),
        "eval_seconds": time.perf_counter() - start,
    }
