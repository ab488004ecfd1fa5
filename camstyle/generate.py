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
- sharded: shard ``i`` of ``n`` takes the images at positions ``i, i+n, ...`` of the training
  list sorted by file name, so shards are disjoint, cover everything and differ by at most one
  image; n workers (or machines sharing the folder) finish together.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set, Tuple

import torch
from PIL import Image

from camstyle.data import CameraSample, is_readable_image, load_rgb, to_image, to_tensor
from camstyle.model import Generator
from uda_reid.adapt.camstyle_data import fake_name
from uda_reid.utils.atomic import atomic_path, atomic_write_text

MANIFEST_DIR = ".manifest"
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


def manifest_path(out_dir: str | Path, index: int, count: int) -> Path:
    return Path(out_dir) / MANIFEST_DIR / f"shard-{index}-of-{count}.txt"


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
def translate(generator: Generator, images: Sequence[Image.Image], targets: Sequence[int],
              image_size: Tuple[int, int]) -> List[Image.Image]:
    """Render each PIL image in the style of its 0-based target camera, at the image's size.

    ``image_size`` = (H, W) the generator works at; outputs are resized back to each input's
    (W, H). The generator runs on its own device, in eval mode.
    """
    if not images:
        return []
    device = next(generator.parameters()).device
    generator.eval()
    x = torch.stack([to_tensor(img, image_size) for img in images]).to(device)
    fakes = generator(x, torch.as_tensor(list(targets), device=device))
    return [to_image(fake, img.size) for fake, img in zip(fakes, images)]


def generate_shard(generator: Generator, samples: Sequence[CameraSample], out_dir: str | Path, *,
                   image_size: Tuple[int, int], shard: Tuple[int, int] = (0, 1),
                   batch_size: int = 32, jpeg_quality: int = 95, progress: bool = True
                   ) -> Dict[str, int]:
    """Run (or continue) shard ``shard = (i, n)`` of the job; returns counts of this call.

    ``image_size`` = (H, W) the generator was trained at; outputs are resized back to each
    source's size. Files are written per source batch; the manifest after each batch.
    """
    from tqdm import tqdm

    index, count = shard
    out_dir = Path(out_dir)
    num_cameras = generator.num_cameras
    mine = shard_samples(samples, index, count)
    manifest = Manifest(manifest_path(out_dir, index, count))
    names = set(expected_outputs(mine, num_cameras))
    stale = remove_stale_temporaries(out_dir, names)
    todo = [s for s in mine if _stem(s[0]) not in manifest
            or not all(is_readable_image(out_dir / n) for n in _outputs_of(s, num_cameras))]
    written = 0
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), disable=not progress,
               desc=f"camstyle shard {index}/{count}", dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        images = [load_rgb(path) for path, _ in batch]
        for target in range(num_cameras):
            rows = [k for k, (_, cam) in enumerate(batch) if cam != target]
            fakes = translate(generator, [images[k] for k in rows], [target] * len(rows),
                              image_size)
            for k, fake in zip(rows, fakes):
                path, cam = batch[k]
                _write_jpeg(fake, out_dir / fake_name(_stem(path), cam, target), jpeg_quality)
                written += 1
        manifest.add(_stem(path) for path, _ in batch)
        bar.update(len(batch))
    bar.close()
    return {"shard_images": len(mine), "skipped_images": len(mine) - len(todo),
            "generated_images": len(todo), "written_files": written,
            "removed_temporaries": len(stale)}
