"""Measured check of camera translators (StarGAN, CycleGANs): do they transfer camera style
and keep identity?

1. A camera classifier (small CNN) is trained on the real training images; its accuracy on
   held-out real gallery images shows it has learnt the cameras. It then classifies images
   generated from held-out query images into every other camera: the share assigned to the
   *target* camera is the transfer rate (chance = 1 / cameras).
2. An identity embedding is used for retrieval: a trained ReID model of ours
   (``CAMSTYLE.EVAL.EMBEDDING_WEIGHTS``, e.g. the stage-1 source model), else the same small CNN
   trained to classify the training identities. The rank-1 rate and mAP of the real queries
   against the real gallery are the reference; those of their generated versions show how much
   identity the transfer keeps (chance rank-1 ~ 1 / gallery identities).
Generated images go through the same path as the generation job (generator size, resize back
to the source size, JPEG encode/decode). Several translators are scored side by side on the
same classifier, embedding and images (:func:`evaluate_transfers`).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from camstyle.data import load_rgb, to_tensor
from camstyle.generate import translate
from uda_reid.evaluation.extract import extract_features
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.models.forward import side_info_domain

Sample = Tuple[str, int, int, int]  # (path, pid, camid, index)
# Identity embedding: PIL images and their (N,) camera ids -> (N, D) features.
Embedder = Callable[[Sequence[Image.Image], torch.Tensor], torch.Tensor]


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


def cnn_embedder(model: SmallCNN, size: Tuple[int, int]) -> Embedder:
    """The small CNN's pooled features of images resized to ``size`` = (H, W)."""
    return lambda images, camids: run_batched(model.features, image_tensor(images, size))


def reid_embedder(model: nn.Module, transform: Callable[[Image.Image], torch.Tensor],
                  domain: str = "target", device: torch.device | str = "cpu",
                  batch_size: int = 128) -> Embedder:
    """A trained uda_reid model as the identity embedding: its test features
    (:func:`extract_features`) of images put through ``transform``, in batches; SIE backbones
    read the cameras as those of ``domain`` (``source`` or ``target``)."""

    def embed(images: Sequence[Image.Image], camids: torch.Tensor) -> torch.Tensor:
        batches = ({"images": torch.stack([transform(img) for img in images[i:i + batch_size]]),
                    "camids": camids[i:i + batch_size], "pids": camids[i:i + batch_size]}
                   for i in range(0, len(images), batch_size))
        with side_info_domain(model, domain):
            return extract_features(model, batches, device=device)[0]

    return embed


def retrieval_scores(query: torch.Tensor, query_pids: torch.Tensor, query_cams: torch.Tensor,
                     gallery: torch.Tensor, gallery_pids: torch.Tensor,
                     gallery_cams: torch.Tensor) -> Dict[str, float]:
    """Rank-1 and mAP of queries (Q, D) against a gallery (G, D) by cosine distance, under the
    Market-1501 protocol (gallery images with the query's identity *and* camera skipped);
    ``query_cams`` are the cameras of the images the queries come from."""
    dist = 1.0 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).t()
    result = evaluate_rank(dist.numpy(), query_pids.numpy(), gallery_pids.numpy(),
                           query_cams.numpy(), gallery_cams.numpy(), max_rank=1)
    return {"rank1": float(result["cmc"][0]), "mAP": float(result["mAP"])}


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


def translated_set(generator: nn.Module, sources: Sequence[Sample], image_size: Tuple[int, int],
                   jpeg_quality: int = 95) -> Dict[str, Any]:
    """Real images of ``sources`` and their versions in every other camera.

    Returns PIL lists ``real`` (S) and ``fake`` (F), ``real_pids``/``real_cams`` (S,) and, per
    fake, ``pids``/``source_cams``/``targets`` (F,) tensors.
    """
    images = [load_rgb(s[0]) for s in sources]
    fakes, rows_all, targets = [], [], []
    for target in range(generator.num_cameras):
        rows = [k for k, s in enumerate(sources) if s[2] != target]
        outs = translate(generator, [images[k] for k in rows], [sources[k][2] for k in rows],
                         [target] * len(rows), image_size)
        fakes += [jpeg_roundtrip(img, jpeg_quality) for img in outs]
        rows_all += rows
        targets += [target] * len(rows)
    pids = torch.tensor([s[1] for s in sources])
    cams = torch.tensor([s[2] for s in sources])
    rows_t = torch.tensor(rows_all, dtype=torch.long)
    return {"real": images, "real_pids": pids, "real_cams": cams, "fake": fakes,
            "pids": pids[rows_t], "source_cams": cams[rows_t], "targets": torch.tensor(targets)}


def identity_keeping(embed: Embedder, sources: Dict[str, Any],
                     gallery: Sequence[Image.Image], gallery_pids: torch.Tensor,
                     gallery_cams: torch.Tensor) -> Dict[str, float]:
    """Rank-1 / mAP of the real sources and of their translations against a real gallery
    (a translation is embedded with its target camera, it is searched from its source's)."""
    gallery_f = embed(gallery, gallery_cams)
    real = retrieval_scores(embed(sources["real"], sources["real_cams"]), sources["real_pids"],
                            sources["real_cams"], gallery_f, gallery_pids, gallery_cams)
    fake = retrieval_scores(embed(sources["fake"], sources["targets"]), sources["pids"],
                            sources["source_cams"], gallery_f, gallery_pids, gallery_cams)
    return {"rank1_real": real["rank1"], "rank1_generated": fake["rank1"],
            "mAP_real": real["mAP"], "mAP_generated": fake["mAP"],
            "num_real": len(sources["real"]), "num_generated": len(sources["fake"]),
            "gallery_images": len(gallery),
            "chance_rank1": 1.0 / max(1, int(gallery_pids.unique().numel()))}


def evaluate_transfer(generator: nn.Module, image_size: Tuple[int, int],
                      train: Sequence[Sample], query: Sequence[Sample],
                      gallery: Sequence[Sample], **options: Any) -> Dict[str, Any]:
    """:func:`evaluate_transfers` of one translator: its result."""
    return evaluate_transfers({"generator": (generator, image_size)}, train, query, gallery,
                              **options)["generator"]


def evaluate_transfers(translators: Mapping[str, Tuple[nn.Module, Tuple[int, int]]],
                       train: Sequence[Sample], query: Sequence[Sample],
                       gallery: Sequence[Sample], *, classifier_size: Tuple[int, int] = (64, 32),
                       epochs: int = 10, max_queries: int = 300, max_gallery: int = 3000,
                       jpeg_quality: int = 95, seed: int = 0,
                       embedder: Optional[Embedder] = None,
                       embedder_name: str = "") -> Dict[str, Dict[str, Any]]:
    """Camera-transfer rate and identity keeping (see the module docstring) of each translator
    ``{label: (translator, its (H, W) input size)}``, as ``{label: result}``; the camera
    classifier and identity embedding are trained once and shared.

    Identity is measured twice: on held-out identities (query sources, real gallery; an
    open-set test) and on the training identities (training-image sources against all training
    images; closed set). Gallery images of the source's identity and camera (the source itself
    included) never count. ``embedder``: the identity embedding (default: a small CNN trained
    here to classify the training identities), described in the result by ``embedder_name``.
    """
    start = time.perf_counter()
    num_cameras = {t.num_cameras for t, _ in translators.values()}
    if len(num_cameras) != 1:
        raise ValueError(f"the translators serve different numbers of cameras {num_cameras}")
    num_cameras = num_cameras.pop()
    train_images = [load_rgb(s[0]) for s in train]
    train_x = image_tensor(train_images, classifier_size)
    train_cams = torch.tensor([s[2] for s in train])
    cam_model = train_classifier(train_x, train_cams, num_cameras, epochs=epochs, seed=seed)
    if embedder is None:
        pid_index = {pid: i for i, pid in enumerate(sorted({s[1] for s in train}))}
        train_pids = torch.tensor([pid_index[s[1]] for s in train])
        id_model = train_classifier(train_x, train_pids, len(pid_index), epochs=epochs,
                                    seed=seed)
        embedder = cnn_embedder(id_model, classifier_size)
        embedder_name = ("SmallCNN identity classifier (pooled features) trained here on the "
                         "real training images")

    gallery = spread(gallery, max_gallery)
    gallery_images = [load_rgb(s[0]) for s in gallery]
    gallery_cams = torch.tensor([s[2] for s in gallery])
    gallery_pids = torch.tensor([s[1] for s in gallery])
    real_cam_acc = (run_batched(cam_model, image_tensor(gallery_images, classifier_size))
                    .argmax(1) == gallery_cams).float().mean()
    checks = SharedChecks(train, query, num_cameras, cam_model, embedder, embedder_name,
                          train_images, train_cams, gallery_images, gallery_pids, gallery_cams,
                          float(real_cam_acc), classifier_size, epochs, max_queries, jpeg_quality,
                          time.perf_counter() - start)
    return {label: _score_translator(translator, image_size, checks)
            for label, (translator, image_size) in translators.items()}


@dataclass
class SharedChecks:
    """What :func:`evaluate_transfers` trains and loads once for every translator."""
    train: Sequence[Sample]
    query: Sequence[Sample]
    num_cameras: int
    cam_model: nn.Module
    embedder: Embedder
    embedder_name: str
    train_images: List[Image.Image]
    train_cams: torch.Tensor
    gallery_images: List[Image.Image]
    gallery_pids: torch.Tensor
    gallery_cams: torch.Tensor
    real_cam_acc: float
    classifier_size: Tuple[int, int]
    epochs: int
    max_queries: int
    jpeg_quality: int
    seconds: float


def _score_translator(generator: nn.Module, image_size: Tuple[int, int], checks: SharedChecks
                      ) -> Dict[str, Any]:
    """One translator's result of :func:`evaluate_transfers` on the shared checks."""
    start = time.perf_counter()
    ch = checks
    held_out = translated_set(generator, spread(ch.query, ch.max_queries), image_size,
                              ch.jpeg_quality)
    predicted = run_batched(ch.cam_model, image_tensor(held_out["fake"], ch.classifier_size)
                            ).argmax(1)
    targets = held_out["targets"]
    per_target = {str(c + 1): (predicted[targets == c] == c).float().mean().item()
                  for c in range(ch.num_cameras) if (targets == c).any()}
    seen = translated_set(generator, spread(ch.train, ch.max_queries), image_size,
                          ch.jpeg_quality)
    return {
        "num_cameras": ch.num_cameras,
        "chance_camera": 1.0 / ch.num_cameras,
        "camera_classifier": {"train_images": len(ch.train), "epochs": ch.epochs,
                              "input_size": list(ch.classifier_size),
                              "real_heldout_accuracy": ch.real_cam_acc,
                              "real_heldout_images": len(ch.gallery_images)},
        "transfer": {"sources": "held-out query images, each into every other camera",
                     "num_generated": len(targets), "num_sources": len(held_out["real"]),
                     "target_camera_rate": (predicted == targets).float().mean().item(),
                     "source_camera_rate": (predicted == held_out["source_cams"]
                                            ).float().mean().item(),
                     "per_target_camera_rate": per_target},
        "identity_embedding": ch.embedder_name,
        "identity_heldout": identity_keeping(ch.embedder, held_out, ch.gallery_images,
                                             ch.gallery_pids, ch.gallery_cams),
        "identity_train_ids": identity_keeping(ch.embedder, seen, ch.train_images,
                                               torch.tensor([s[1] for s in ch.train]),
                                               ch.train_cams),
        "eval_seconds": ch.seconds + time.perf_counter() - start,
    }
