"""Generation jobs: every training image rendered in the style of every other camera.

Output contract (ECN's camera invariance, defined in :mod:`uda_reid.adapt.camstyle_data`):
``<root>/bounding_box_train_camstyle/<stem>_fake_<c>to<c'>.jpg`` with cameras numbered from 1
as in the dataset file names, each image resized back to its source's size. Jobs are

- restartable: a shard's manifest (``<out>/.manifest/shard-<i>-of-<n>.txt``, one finished source
  stem per line, appended and fsynced after all its files are renamed into place) lists what a
  rerun skips (unless one of its files has since disappeared or no longer decodes, e.g. a
  truncated copy); a torn last line (a kill while appending) does not count;
- atomic per file: each JPEG is written to a hidden temporary name and renamed; temporaries a
  killed run left behind for this shard's files are removed when the shard starts again;
- sharded: a job is a list of units, each one source image with the cameras to render it in.
  For StarGAN a unit is an image with every other camera, and shard ``i`` of ``n`` takes the
  images at positions ``i, i+n, ...`` of the training list sorted by file name. For the
  CycleGANs of camera pairs a unit is an (image, pair) with the pair's other camera, listed pair
  by pair, and shard ``i`` takes the ``i``-th of ``n`` contiguous blocks, so a shard loads the
  generators of few pairs. Either way shards are disjoint, cover everything and differ by at
  most one unit; n workers (or machines sharing the folder) finish together.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set, Tuple

import torch
from PIL import Image

from torch import nn

from camstyle.cyclegan_train import Pair, camera_pairs
from camstyle.data import CameraSample, is_readable_image, load_rgb, to_image, to_tensor
from uda_reid.adapt.camstyle_data import fake_name
from uda_reid.utils.atomic import atomic_path, atomic_write_text

MANIFEST_DIR = ".manifest"
# (manifest key, source image, 0-based cameras to render it in)
Unit = Tuple[str, CameraSample, Tuple[int, ...]]
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # uda_reid.utils.atomic's temp names


def parse_shard(text: str) -> Tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n (shards are numbered from 0)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard must be 'i/n' with 0 <= i < n (shards count from 0), got "
                         f"'{text}'")
    return int(match.group(1)), int(match.group(2))


def _stem(path: str) -> str:
    return Path(path).stem


def check_unique_stems(samples: Sequence[CameraSample]) -> None:
    """Output names are built from stems: two sources with one stem would collide."""
    seen: Dict[str, str] = {}
    for path, _ in samples:
        other = seen.setdefault(_stem(path), path)
        if other != path:
            raise ValueError(f"Two training images share the stem '{_stem(path)}': {other} and "
                             f"{path}; camstyle file names would collide")


def _outputs_of(sample: CameraSample, num_cameras: int) -> Dict[str, int]:
    """Output name -> 0-based target camera for one source image."""
    path, cam = sample
    return {fake_name(_stem(path), cam, t): t for t in range(num_cameras) if t != cam}


def expected_outputs(samples: Sequence[CameraSample], num_cameras: int
                     ) -> Dict[str, Tuple[str, int]]:
    """Every output file name -> (source image path, 0-based target camera)."""
    check_unique_stems(samples)
    out: Dict[str, Tuple[str, int]] = {}
    for path, cam in samples:
        if not 0 <= cam < num_cameras:
            raise ValueError(f"{path}: camera id {cam} outside [0, {num_cameras})")
        out.update({name: (path, t) for name, t in _outputs_of((path, cam), num_cameras).items()})
    return out


def shard_samples(samples: Sequence[CameraSample], index: int, count: int
                  ) -> List[CameraSample]:
    """Shard ``index`` of ``count``: positions index, index+count, ... of the name-sorted list."""
    ordered = sorted(samples, key=lambda s: (Path(s[0]).name, s[0]))
    return ordered[index::count]


def image_units(samples: Sequence[CameraSample], num_cameras: int, index: int, count: int
                ) -> List[Unit]:
    """StarGAN shard ``index`` of ``count``: its images (:func:`shard_samples`), each with every
    other camera, keyed by stem."""
    return [(_stem(s[0]), s, tuple(t for t in range(num_cameras) if t != s[1]))
            for s in shard_samples(samples, index, count)]


def pair_units(samples: Sequence[CameraSample], num_cameras: int, index: int, count: int
               ) -> List[Unit]:
    """CycleGAN shard ``index`` of ``count``: block ``index`` of the (image, pair) units listed
    pair by pair (pairs as :func:`camstyle.cyclegan_train.camera_pairs`, images by name), each
    keyed by its output file name."""
    ordered = sorted(samples, key=lambda s: (Path(s[0]).name, s[0]))
    units = [(fake_name(_stem(path), cam, b + a - cam), (path, cam), (b + a - cam,))
             for a, b in camera_pairs(num_cameras) for path, cam in ordered if cam in (a, b)]
    return units[index * len(units) // count:(index + 1) * len(units) // count]


def unit_pairs(units: Sequence[Unit]) -> List[Pair]:
    """The camera pairs (a < b) whose generators ``units`` need."""
    return sorted({(min(s[1], t), max(s[1], t)) for _, s, targets in units for t in targets})


class Manifest:
    """Append-only list of finished source stems for one shard (torn last line ignored)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._done = self._read()

    def _read(self) -> Set[str]:
        if not self.path.exists():
            return set()
        text = self.path.read_text()
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        if complete != text:  # drop a torn last line so the next append starts a fresh line
            atomic_write_text(self.path, complete)
        return set(complete.split())

    def __contains__(self, stem: str) -> bool:
        return stem in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, stems: Iterable[str]) -> None:
        stems = [s for s in stems if s not in self._done]
        if not stems:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write("".join(f"{s}\n" for s in stems))
            handle.flush()
            os.fsync(handle.fileno())
        self._done.update(stems)


def manifest_path(out_dir: str | Path, index: int, count: int, kind: str = "shard") -> Path:
    """The manifest of shard ``index`` of ``count`` of a job ``kind`` (``shard``: StarGAN's
    image shards, ``pairs``: CycleGAN's pair shards)."""
    return Path(out_dir) / MANIFEST_DIR / f"{kind}-{index}-of-{count}.txt"


def remove_stale_temporaries(out_dir: str | Path, names: Set[str]) -> List[Path]:
    """Delete temporary files left by a killed run whose destination is in ``names``."""
    removed = []
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return removed
    for entry in out_dir.iterdir():
        match = _TEMP_RE.match(entry.name)
        if match and match.group("name") in names and entry.is_file():
            entry.unlink()
            removed.append(entry)
    return removed


def _write_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=quality)


@torch.no_grad()
def translate(translator: nn.Module, images: Sequence[Image.Image], sources: Sequence[int],
              targets: Sequence[int], image_size: Tuple[int, int]) -> List[Image.Image]:
    """Render each PIL image, taken by 0-based camera ``sources[k]``, in the style of camera
    ``targets[k]``, at the image's size (a camera translator, :mod:`camstyle.translators`).

    ``image_size`` = (H, W) the translator works at; outputs are resized back to each input's
    (W, H). The translator runs on its own device, in eval mode.
    """
    if not images:
        return []
    device = next(translator.parameters()).device
    translator.eval()
    x = torch.stack([to_tensor(img, image_size) for img in images]).to(device)
    fakes = translator(x, torch.as_tensor(list(targets), device=device),
                       torch.as_tensor(list(sources), device=device))
    return [to_image(fake, img.size) for fake, img in zip(fakes, images)]


def _unit_outputs(unit: Unit) -> List[str]:
    _, (path, cam), targets = unit
    return [fake_name(_stem(path), cam, t) for t in targets]


def generate_units(translator: nn.Module, units: Sequence[Unit], out_dir: str | Path,
                   manifest: Manifest, *, image_size: Tuple[int, int], batch_size: int = 32,
                   jpeg_quality: int = 95, progress: bool = True, desc: str = "camstyle"
                   ) -> Dict[str, int]:
    """Render the ``units`` the manifest does not list as finished (or whose files have gone
    or no longer decode); returns counts of this call (``*_images`` count units).

    ``image_size`` = (H, W) the translator was trained at; outputs are resized back to each
    source's size. Files are written per batch of units; the manifest after each batch.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    stale = remove_stale_temporaries(out_dir, {n for u in units for n in _unit_outputs(u)})
    todo = [u for u in units if u[0] not in manifest
            or not all(is_readable_image(out_dir / n) for n in _unit_outputs(u))]
    written = 0
    bar = tqdm(total=len(units), initial=len(units) - len(todo), disable=not progress,
               desc=desc, dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        images = [load_rgb(path) for _, (path, _), _ in batch]
        for target in sorted({t for _, _, targets in batch for t in targets}):
            rows = [k for k, (_, _, targets) in enumerate(batch) if target in targets]
            fakes = translate(translator, [images[k] for k in rows],
                              [batch[k][1][1] for k in rows], [target] * len(rows), image_size)
            for k, fake in zip(rows, fakes):
                path, cam = batch[k][1]
                _write_jpeg(fake, out_dir / fake_name(_stem(path), cam, target), jpeg_quality)
                written += 1
        manifest.add(key for key, _, _ in batch)
        bar.update(len(batch))
    bar.close()
    return {"shard_images": len(units), "skipped_images": len(units) - len(todo),
            "generated_images": len(todo), "written_files": written,
            "removed_temporaries": len(stale)}


def generate_shard(generator: nn.Module, samples: Sequence[CameraSample], out_dir: str | Path,
                   *, image_size: Tuple[int, int], shard: Tuple[int, int] = (0, 1),
                   batch_size: int = 32, jpeg_quality: int = 95, progress: bool = True
                   ) -> Dict[str, int]:
    """Run (or continue) shard ``shard = (i, n)`` of a StarGAN job (every image into every
    other camera, :func:`image_units`); see :func:`generate_units`."""
    index, count = shard
    check_unique_stems(samples)
    return generate_units(generator, image_units(samples, generator.num_cameras, index, count),
                          out_dir, Manifest(manifest_path(out_dir, index, count)),
                          image_size=image_size, batch_size=batch_size,
                          jpeg_quality=jpeg_quality, progress=progress,
                          desc=f"camstyle shard {index}/{count}")


def generate_pair_shard(translator: nn.Module, samples: Sequence[CameraSample],
                        out_dir: str | Path, *, image_size: Tuple[int, int],
                        shard: Tuple[int, int] = (0, 1), batch_size: int = 32,
                        jpeg_quality: int = 95, progress: bool = True) -> Dict[str, int]:
    """Run (or continue) shard ``shard = (i, n)`` of a CycleGAN job (:func:`pair_units`);
    ``translator`` needs the generators of :func:`unit_pairs` of the shard's units."""
    index, count = shard
    check_unique_stems(samples)
    return generate_units(translator, pair_units(samples, translator.num_cameras, index, count),
                          out_dir, Manifest(manifest_path(out_dir, index, count, "pairs")),
                          image_size=image_size, batch_size=batch_size,
                          jpeg_quality=jpeg_quality, progress=progress,
                          desc=f"camstyle pair shard {index}/{count}")
