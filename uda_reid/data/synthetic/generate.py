"""Write a synthetic domain to disk in the real Market-1501 / DukeMTMC-reID layouts.

The folder is a cache: a ``manifest.json`` (every file's size and SHA-256, written last and
atomically) marks it complete. A folder without a valid manifest (an interrupted generation,
a truncated file, an older generator) is generated again and only the files the generator
writes are replaced; anything else in it (e.g. camera-style images a user generated beside the
dataset) stays. Output is byte-identical
for the same domain, scale and seed. Processes that ask for the same domain at once (DDP ranks,
parallel test runs) take turns on a lock file beside the folder, so it is generated once; the
copy is built in a temporary folder and renamed into place when complete, so the folder's name
never shows half-written files.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import numpy as np
from PIL import Image

from uda_reid.data.synthetic.domains import DOMAINS, SCALES, DomainSpec, ScaleSpec
from uda_reid.data.synthetic.render import render_image, sample_identity
from uda_reid.utils.atomic import atomic_write_json
from uda_reid.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 3
LAYOUT_DIRS = {"market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID"}
MANIFEST = "manifest.json"


def domain_folder(root: str | Path, name: str, scale: str, seed: int) -> Path:
    """Where ``name`` at ``scale``/``seed`` lives: ``<root>/<name>-<scale>-s<seed>``."""
    return Path(root) / f"{name}-{scale}-s{seed}"


def _file_name(layout: str, pid: int, cam: int, frame: int, box: int) -> str:
    if layout == "market1501":
        return f"{pid:04d}_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg" if pid >= 0 else \
            f"-1_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg"
    return f"{pid:04d}_c{cam + 1}_f{frame:07d}.jpg"


def _domain_key(name: str) -> int:
    """A stable integer per domain name, mixed into every seed so domains draw independently."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def _plan(spec: DomainSpec, scale: ScaleSpec, seed: int
          ) -> Iterator[Tuple[str, int, int, int, int]]:
    """Yield (split, pid, identity key, camera, image number) for every image to render.

    Train ids are 1..T and test ids T+1..T+Q (disjoint, as in the real datasets). A test
    identity gets one query image from each of its cameras except one gallery-only camera.
    """
    rng = np.random.default_rng([seed, _domain_key(spec.name), 1])
    for split, first, count in (("train", 1, scale.train_ids),
                                ("test", scale.train_ids + 1, scale.test_ids)):
        for pid in range(first, first + count):
            n_cams = int(rng.integers(scale.cameras_per_id[0], scale.cameras_per_id[1] + 1))
            cams = sorted(rng.choice(spec.num_cameras, size=n_cams, replace=False).tolist())
            for j, cam in enumerate(cams):
                n_img = int(rng.integers(scale.images_per_camera[0],
                                         scale.images_per_camera[1] + 1))
                for k in range(n_img):
                    sub = split
                    if split == "test":
                        sub = "query" if (k == 0 and j < len(cams) - 1) else "gallery"
                    yield sub, pid, pid, cam, k
    if spec.layout == "market1501":
        extra = scale.train_ids + scale.test_ids + 1
        for i in range(scale.distractors):
            yield "gallery", 0, extra + i, int(rng.integers(spec.num_cameras)), 0
        for i in range(scale.junk):
            key = extra + scale.distractors + i
            yield "gallery", -1, key, int(rng.integers(spec.num_cameras)), 0


def _render_all(spec: DomainSpec, scale: ScaleSpec, seed: int, base: Path
                ) -> Dict[Path, bytes]:
    """Render and write every image under ``base``; returns each file's JPEG bytes."""
    subdirs = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for sub in subdirs.values():
        (base / sub).mkdir(parents=True, exist_ok=True)
    identities: Dict[int, object] = {}
    written: Dict[Path, bytes] = {}
    frame = 0
    dkey = _domain_key(spec.name)
    for split, pid, key, cam, k in _plan(spec, scale, seed):
        if key not in identities:
            identities[key] = sample_identity(np.random.default_rng([seed, dkey, 2, key]),
                                              spec.attributes)
        frame += 1
        rng = np.random.default_rng([seed, dkey, 3, key, cam, k])
        img = render_image(identities[key], spec.cameras[cam], rng, scale.height, scale.width)
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=92)
        path = base / subdirs[split] / _file_name(spec.layout, pid, cam, frame, k + 1)
        path.write_bytes(buffer.getvalue())
        written[path] = buffer.getvalue()
    return written


def manifest_ok(folder: Path, checksums: bool = False) -> bool:
    """Whether ``folder`` holds a complete domain of this generator version: every file of
    its manifest present with the recorded size (and SHA-256 when ``checksums``)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text())
        if data.get("version") != GENERATOR_VERSION:
            return False
        for rel, entry in data["files"].items():
            path = folder / rel
            if not path.is_file() or path.stat().st_size != entry["size"]:
                return False
            if checksums and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _manifest_files(folder: Path) -> Set[str]:
    """The files (relative paths) ``folder``'s manifest lists; none when it is unreadable."""
    try:
        return set(json.loads((folder / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _replace_generated(work: Path, folder: Path) -> None:
    """Move the fresh copy in ``work`` over the stale one in ``folder``, file by file. Stale
    files go: those the old manifest lists and any other file in the image folders the
    generator writes (it would be read as a dataset image). Nothing else in ``folder`` is
    touched (e.g. the user's ``bounding_box_train_camstyle/``). The manifest goes first and
    comes back last, so a kill in between leaves the folder stale again."""
    fresh = _manifest_files(work)
    owned = {Path(rel).parent for rel in fresh}
    stale = _manifest_files(folder) | {str(p.relative_to(folder)) for d in owned
                                       if (folder / d).is_dir() for p in (folder / d).iterdir()
                                       if p.is_file()}
    (folder / MANIFEST).unlink(missing_ok=True)
    for rel in sorted(stale - fresh):
        (folder / rel).unlink(missing_ok=True)
    for rel in sorted(fresh):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / rel, folder / rel)
    os.replace(work / MANIFEST, folder / MANIFEST)
    shutil.rmtree(work)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (released by the OS if the process dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_domain(root: str | Path, name: str, scale: str = "default", seed: int = 0,
                  verify_checksums: bool = False) -> Path:
    """Generate domain ``name`` under ``root`` unless a complete copy is cached there.

    Returns the folder ``<root>/<name>-<scale>-s<seed>``; the dataset sits inside it in its
    real layout (e.g. ``Market-1501-v15.09.15/``). The cache is checked by file sizes, and
    also by content when ``verify_checksums``.
    """
    if name not in DOMAINS:
        raise UnknownNameError(f"Unknown synthetic domain '{name}'; known: {', '.join(DOMAINS)}")
    if scale not in SCALES:
        raise UnknownNameError(f"Unknown synthetic scale '{scale}' (DATASETS.SYNTH_SCALE); "
                               f"known: {', '.join(SCALES)}")
    folder = domain_folder(root, name, scale, seed)
    if manifest_ok(folder, verify_checksums):
        return folder
    with _exclusive(folder.with_name(f".{folder.name}.lock")):
        if manifest_ok(folder, verify_checksums):  # another process generated it meanwhile
            return folder
        spec, size = DOMAINS[name], SCALES[scale]
        start = time.perf_counter()
        work = folder.with_name(f".{folder.name}.tmp")  # ours while the lock is held
        shutil.rmtree(work, ignore_errors=True)  # left by a killed generation
        files = _render_all(spec, size, seed, work / LAYOUT_DIRS[spec.layout])
        digest = hashlib.sha256()
        for data in files.values():
            digest.update(data)
        atomic_write_json(work / MANIFEST, {
            "version": GENERATOR_VERSION, "name": name, "scale": scale, "seed": seed,
            "sha256": digest.hexdigest(),
            "files": {str(p.relative_to(work)): {"size": len(data),
                                                 "sha256": hashlib.sha256(data).hexdigest()}
                      for p, data in files.items()}})
        if folder.exists():
            logger.warning("Synthetic domain at %s is incomplete or stale (no valid manifest): "
                           "replacing the files it generated", folder)
            _replace_generated(work, folder)
        else:
            os.rename(work, folder)
        logger.info("Generated %s (%s, seed %d): %d images in %.1f s at %s", name, scale, seed,
                    len(files), time.perf_counter() - start, folder)
    return folder
