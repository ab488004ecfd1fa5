"""Pretrained weights by torchvision / timm name, found in those libraries' own caches.

``torchvision:ResNet50_Weights.IMAGENET1K_V1`` is looked up in torch hub's checkpoint folder
(``$TORCH_HOME/hub/checkpoints``, the file name of the weight's URL), as torchvision itself
stores it. ``timm:resnet50.tv_in1k`` is looked up in the Hugging Face hub cache
(``$HF_HUB_CACHE``, repository ``timm/resnet50.tv_in1k``) and, for timm weights that also have
a URL, in torch hub's checkpoint folder. Nothing is downloaded unless ``download`` is set; an
absent file is an error that names the file and where to put it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

logger = logging.getLogger(__name__)

SOURCES = ("torchvision", "timm")
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")  # timm's order of preference


@dataclass(frozen=True)
class WeightLocation:
    """Where a named weight file lives: ``url`` (torch hub checkpoints) and/or a Hugging Face
    repository ``hf_repo`` with candidate ``hf_filenames``."""

    name: str
    url: str = ""
    hf_repo: str = ""
    hf_filenames: Tuple[str, ...] = HF_FILENAMES


def split_weight_name(name: str) -> Tuple[str, str]:
    """``"torchvision:ResNet50_Weights.IMAGENET1K_V1"`` -> ``("torchvision", "ResNet50_...")``."""
    source, sep, rest = name.partition(":")
    if not sep or source not in SOURCES or not rest:
        raise ValueError(f"MODEL.BACKBONE.PRETRAIN_NAME {name!r} must be 'torchvision:<Enum>."
                         "<MEMBER>' (e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1) or "
                         "'timm:<model>.<tag>' (e.g. timm:resnet50.tv_in1k)")
    return source, rest


def weight_location(name: str) -> WeightLocation:
    """The URL / Hugging Face repository of a ``torchvision:`` or ``timm:`` weight name."""
    source, rest = split_weight_name(name)
    if source == "torchvision":
        import torchvision

        try:
            weights = torchvision.models.get_weight(rest)
        except (KeyError, ValueError, AttributeError) as err:
            raise ValueError(f"MODEL.BACKBONE.PRETRAIN_NAME {name!r}: torchvision has no "
                             f"weights {rest!r} ({err})") from None
        return WeightLocation(name, url=weights.url)
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(rest)
    except RuntimeError:  # timm's "Invalid pretrained tag"
        cfg = None
    if cfg is None or not (cfg.url or cfg.hf_hub_id):
        raise ValueError(f"MODEL.BACKBONE.PRETRAIN_NAME {name!r}: timm has no pretrained "
                         f"weights named {rest!r}")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILENAMES
    return WeightLocation(name, url=cfg.url or "", hf_repo=cfg.hf_hub_id or "",
                          hf_filenames=files)


def torch_hub_file(url: str) -> Path:
    """Where torch hub keeps the download of ``url``: ``<TORCH_HOME>/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder in force (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def find_cached(location: WeightLocation) -> Optional[Path]:
    """The cached file of ``location`` (Hugging Face cache first, then torch hub), or None."""
    if location.hf_repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in location.hf_filenames:
            found = try_to_load_from_cache(location.hf_repo, filename, cache_dir=hf_cache_dir())
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if location.url and torch_hub_file(location.url).is_file():
        return torch_hub_file(location.url)
    return None


def download(location: WeightLocation) -> Path:
    """Fetch ``location`` into its library's cache and return the file (network needed)."""
    if location.hf_repo:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        for filename in location.hf_filenames:
            try:
                return Path(hf_hub_download(location.hf_repo, filename, cache_dir=hf_cache_dir()))
            except EntryNotFoundError:
                continue
        raise FileNotFoundError(f"Hugging Face repository {location.hf_repo} has none of "
                                f"{', '.join(location.hf_filenames)}")
    target = torch_hub_file(location.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    # torch hub names its files <name>-<sha256 prefix>.<ext>: check the download against it
    digest = torch.hub.HASH_REGEX.search(target.name)
    torch.hub.download_url_to_file(location.url, str(target),
                                   hash_prefix=digest.group(1) if digest else None)
    return target


def missing_message(location: WeightLocation) -> str:
    """One line: the exact file to put where for ``location``, and the two alternatives."""
    if location.hf_repo:
        repo_dir = "models--" + location.hf_repo.replace("/", "--")
        where = (f"put {location.hf_filenames[0]} of Hugging Face repository "
                 f"{location.hf_repo} in the Hugging Face cache as {hf_cache_dir()}/{repo_dir}/"
                 f"snapshots/<revision>/{location.hf_filenames[0]} (with refs/main naming "
                 "<revision>; `huggingface-cli download` on a connected machine writes exactly "
                 "that)")
        if location.url:
            where += f", or put {location.url} at {torch_hub_file(location.url)}"
    else:
        where = f"put {location.url} at {torch_hub_file(location.url)}"
    return (f"Pretrained weights {location.name} are not cached: {where}; or set "
            "MODEL.BACKBONE.PRETRAIN_DOWNLOAD True to download them, or "
            "MODEL.BACKBONE.PRETRAIN_PATH to a local file")


def resolve_weight_name(name: str, allow_download: bool = False) -> Path:
    """The local file of weight ``name`` from the torchvision / timm caches; downloaded into
    that cache only with ``allow_download``; otherwise FileNotFoundError (one line, naming
    the expected file)."""
    location = weight_location(name)
    found = find_cached(location)
    if found is not None:
        logger.info("Pretrained weights %s found in the cache: %s", name, found)
        return found
    if not allow_download:
        raise FileNotFoundError(missing_message(location))
    logger.info("Downloading pretrained weights %s (MODEL.BACKBONE.PRETRAIN_DOWNLOAD is on)", name)
    return download(location)


def pretrained_file(opts) -> str:
    """The weight file ``MODEL.BACKBONE`` (``opts``) asks for: ``PRETRAIN_PATH`` (a local file)
    or the cached file of ``PRETRAIN_NAME`` (downloaded only with ``PRETRAIN_DOWNLOAD``)."""
    if opts.PRETRAIN_PATH and opts.PRETRAIN_NAME:
        raise ValueError("MODEL.BACKBONE.PRETRAIN_PATH and MODEL.BACKBONE.PRETRAIN_NAME are both "
                         f"set ({opts.PRETRAIN_PATH!r}, {opts.PRETRAIN_NAME!r}); give one")
    if opts.PRETRAIN_NAME:
        return str(resolve_weight_name(opts.PRETRAIN_NAME, opts.PRETRAIN_DOWNLOAD))
    if not opts.PRETRAIN_PATH:
        raise ValueError("MODEL.BACKBONE.PRETRAIN is on but MODEL.BACKBONE.PRETRAIN_PATH is empty "
                         "and no PRETRAIN_NAME is given: give a local weight file or a "
                         "torchvision:/timm: weight name")
    return opts.PRETRAIN_PATH
