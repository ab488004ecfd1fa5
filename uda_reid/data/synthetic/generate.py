"""Write a synthetic domain to disk in the real Market-1501 / DukeMTMC-reID / MSMT17_V1 layouts.

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
from typing import Dict, Iterator, List, Set, Tuple

import numpy as np
from PIL import Image

from uda_reid.data.synthetic.domains import (DOMAINS, SCALES, VERSIONS, DomainSpec, ScaleSpec,
                                             resolve_version)
from uda_reid.data.synthetic.render import render_image, render_with_effects, sample_identity
from uda_reid.utils.atomic import atomic_write_json
from uda_reid.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 3
LAYOUT_DIRS = {"market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID",
               "msmt17": "MSMT17_V1"}
MANIFEST = "manifest.json"
MSMT_DAYS = ("0113", "0114", "0302", "0303")  # recording days in MSMT17 file names (MMDD)


def domain_folder(root: str | Path, name: str, scale: str, seed: int, version: int = 1
                  ) -> Path:
    """Where ``name`` at ``scale``/``seed`` and domain version ``version`` (resolved, see
    :func:`resolve_version`) lives: ``<root>/<name>-<scale>-s<seed>-v<version>``; version 1
    keeps the name it had before versions existed, ``<root>/<name>-<scale>-s<seed>``, so its
    caches (and camera-style images written beside them) stay valid."""
    suffix = "" if version == 1 else f"-v{version}"
    return Path(root) / f"{name}-{scale}-s{seed}{suffix}"


def _file_name(layout: str, pid: int, cam: int, frame: int, box: int) -> str:
    if layout == "market1501":
        return f"{pid:04d}_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg" if pid >= 0 else \
            f"-1_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg"
    return f"{pid:04d}_c{cam + 1}_f{frame:07d}.jpg"


def _msmt_name(pid: int, cam: int, frame: int, box: int, tag: str) -> str:
    """``<pid folder>/<pid>_<box>_<camera>_<day><time of day>_<frame>_0.jpg`` (MSMT17_V1)."""
    return f"{pid:04d}/{pid:04d}_{box:03d}_{cam + 1:02d}_{tag}_{frame:04d}_0.jpg"


def _domain_key(name: str) -> int:
    """A stable integer per domain name, mixed into every seed so domains draw independently."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def _plan(spec: DomainSpec, scale: ScaleSpec, seed: int
          ) -> Iterator[Tuple[str, int, int, int, int]]:
    """Yield (split, pid, identity key, camera, image number) for every image to render.

    Train ids are 1..T and test ids T+1..T+Q (disjoint, as in the real datasets). A test
    identity gets one query image from each of its cameras except one gallery-only camera.
    A share ``val_share`` of the training images is listed as validation (split ``val``).
    """
    rng = np.random.default_rng([seed, _domain_key(spec.name), 1])
    num_train = spec.identities(scale.train_ids)
    for split, first, count in (("train", 1, num_train),
                                ("test", num_train + 1, spec.identities(scale.test_ids))):
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
                    elif spec.val_share > 0 and rng.random() < spec.val_share:
                        sub = "val"
                    yield sub, pid, pid, cam, k
    if spec.layout == "market1501":
        extra = spec.identities(scale.train_ids) + spec.identities(scale.test_ids) + 1
        for i in range(scale.distractors):
            yield "gallery", 0, extra + i, int(rng.integers(spec.num_cameras)), 0
        for i in range(scale.junk):
            key = extra + scale.distractors + i
            yield "gallery", -1, key, int(rng.integers(spec.num_cameras)), 0


def _render(spec: DomainSpec, ident: object, seed: int, key: int, cam: int, k: int,
            scale: ScaleSpec) -> Tuple[np.ndarray, str]:
    """Image ``k`` of identity ``key`` in camera ``cam`` (H, W, 3) uint8 and its
    ``<day><time of day>`` tag (MSMT17 file names; ``""`` without times of day)."""
    dkey = _domain_key(spec.name)
    rng = np.random.default_rng([seed, dkey, 3, key, cam, k])
    if not spec.effects:
        return render_image(ident, spec.cameras[cam], rng, scale.height, scale.width), ""
    effect_rng = np.random.default_rng([seed, dkey, 4, key, cam, k])
    tag, time = "", None
    if spec.times_of_day:
        time = spec.times_of_day[int(effect_rng.integers(len(spec.times_of_day)))]
        tag = MSMT_DAYS[int(effect_rng.integers(len(MSMT_DAYS)))] + time.name
    img = render_with_effects(ident, spec.cameras[cam], spec.effects[cam], rng, effect_rng,
                              scale.height, scale.width, (dkey, cam), time)
    return img, tag


def _image_path(spec: DomainSpec, split: str, pid: int, cam: int, frame: int, k: int,
                tag: str, num_train: int) -> str:
    """An image's path in the layout folder. MSMT17 numbers train and test identities from 0
    each (train/ and test/ folders); the others keep the plan's ids."""
    if spec.layout == "msmt17":
        if split in ("train", "val"):
            return "train/" + _msmt_name(pid - 1, cam, frame, k, tag)
        return "test/" + _msmt_name(pid - num_train - 1, cam, frame, k, tag)
    subdirs = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    return f"{subdirs[split]}/{_file_name(spec.layout, pid, cam, frame, k + 1)}"


def _msmt_lists(records: List[Tuple[str, str]]) -> Dict[str, bytes]:
    """``list_{train,val,query,gallery}.txt`` from (split, image path) records: one
    ``<path under train/ or test/> <pid>`` line per image."""
    lines: Dict[str, List[str]] = {split: [] for split in ("train", "val", "query", "gallery")}
    for split, rel in records:
        inner = rel.split("/", 1)[1]
        lines[split].append(f"{inner} {int(inner.split('/')[0])}")
    return {f"list_{split}.txt": ("\n".join(rows) + "\n").encode()
            for split, rows in lines.items()}


def _render_all(spec: DomainSpec, scale: ScaleSpec, seed: int, base: Path
                ) -> Dict[Path, bytes]:
    """Render and write every image (and the MSMT17 list files) under ``base``; returns each
    file's bytes."""
    identities: Dict[int, object] = {}
    written: Dict[Path, bytes] = {}
    records: List[Tuple[str, str]] = []
    num_train = spec.identities(scale.train_ids)
    frame = 0
    for split, pid, key, cam, k in _plan(spec, scale, seed):
        if key not in identities:
            identities[key] = sample_identity(
                np.random.default_rng([seed, _domain_key(spec.name), 2, key]), spec.attributes)
        frame += 1
        img, tag = _render(spec, identities[key], seed, key, cam, k, scale)
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=92)
        rel = _image_path(spec, split, pid, cam, frame, k, tag, num_train)
        records.append((split, rel))
        written[base / rel] = buffer.getvalue()
    if spec.layout == "msmt17":
        written.update({base / name: data for name, data in _msmt_lists(records).items()})
    for path, data in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
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
                  version: int = 1, verify_checksums: bool = False) -> Path:
    """Generate domain ``name`` under ``root`` unless a complete copy is cached there.

    Returns the folder :func:`domain_folder` names for the domain's version resolved from
    ``version`` (:func:`resolve_version`); the dataset sits inside it in its real layout
    (e.g. ``Market-1501-v15.09.15/``). The cache is checked by file sizes, and also by
    content when ``verify_checksums``.
    """
    if name not in DOMAINS:
        raise UnknownNameError(f"Unknown synthetic domain '{name}'; known: {', '.join(DOMAINS)}")
    if scale not in SCALES:
        raise UnknownNameError(f"Unknown synthetic scale '{scale}' (DATASETS.SYNTH_SCALE); "
                               f"known: {', '.join(SCALES)}")
    if version not in VERSIONS:
        raise UnknownNameError(f"Unknown synthetic domain version {version} "
                               f"(DATASETS.SYNTH_VERSION); known: "
                               f"{', '.join(map(str, VERSIONS))}")
    version = resolve_version(name, version)
    folder = domain_folder(root, name, scale, seed, version)
    if manifest_ok(folder, verify_checksums):
        return folder
    with _exclusive(folder.with_name(f".{folder.name}.lock")):
        if manifest_ok(folder, verify_checksums):  # another process generated it meanwhile
            return folder
        spec, size = DOMAINS[name][version], SCALES[scale]
        start = time.perf_counter()
        work = folder.with_name(f".{folder.name}.tmp")  # ours while the lock is held
        shutil.rmtree(work, ignore_errors=True)  # left by a killed generation
        files = _render_all(spec, size, seed, work / LAYOUT_DIRS[spec.layout])
        digest = hashlib.sha256()
        for data in files.values():
            digest.update(data)
        atomic_write_json(work / MANIFEST, {
            "version": GENERATOR_VERSION, "name": name, "domain_version": version,
            "scale": scale, "seed": seed,
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
        logger.info("Generated %s v%d (%s, seed %d): %d files in %.1f s at %s", name, version,
                    scale, seed, len(files), time.perf_counter() - start, folder)
    return folder
