"""Camera translators: what generation and evaluation run, whichever GAN made them.

A translator is a module with ``num_cameras`` called as ``translator(x (N, 3, H, W), targets
(N,), sources (N,)) -> (N, 3, H, W)``: image n rendered in camera ``targets[n]``'s style, given
that it comes from camera ``sources[n]`` (0-based). The StarGAN generator is one (it needs no
source camera); :class:`PairTranslator` makes one of the CycleGANs of the camera pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from camstyle.config import load_generator
from camstyle.cyclegan_model import ResnetGenerator
from camstyle.cyclegan_train import Pair, camera_pairs, pair_dir
from uda_reid.utils.errors import UserError
from uda_reid.utils.safe_load import load_weights_file


class PairTranslator(nn.Module):
    """The generators of camera pairs: ``generators[(s, t)]`` renders camera s in t's style."""

    def __init__(self, generators: Mapping[Tuple[int, int], nn.Module], num_cameras: int) -> None:
        super().__init__()
        self.num_cameras = num_cameras
        self.directions = nn.ModuleDict({f"{s}_{t}": g for (s, t), g in generators.items()})

    def forward(self, x: Tensor, targets: Tensor, sources: Tensor) -> Tensor:
        out = torch.empty_like(x)
        for s, t in sorted({(int(s), int(t)) for s, t in zip(sources, targets)}):
            key = f"{s}_{t}"
            if key not in self.directions:
                raise ValueError(f"no CycleGAN loaded for camera {s + 1} -> {t + 1}")
            rows = (sources == s) & (targets == t)
            out[rows] = self.directions[key](x[rows])
        return out


class UnfinishedPairError(UserError, ValueError):
    """A camera pair's CycleGAN is missing or has not finished training."""


def load_pair_generators(folder: str | Path, pair: Pair, device: torch.device | str = "cpu"
                         ) -> Tuple[Dict[Tuple[int, int], nn.Module], Dict[str, Any]]:
    """Both generators of a finished pair run (eval mode) and its checkpoint ``meta`` (with
    ``epoch``)."""
    path = Path(folder) / "last.pth"
    if not path.is_file():
        raise UnfinishedPairError(f"no CycleGAN checkpoint {path} for cameras {pair[0] + 1} and "
                                  f"{pair[1] + 1}: train it first (tools/camstyle.py train)")
    state = load_weights_file(path, "CycleGAN checkpoint")
    meta = state.get("meta", {}) if isinstance(state, Mapping) else {}
    spec = meta.get("model_spec")
    if not isinstance(spec, Mapping) or "model" not in state:
        raise ValueError(f"{path} is not a CycleGAN pair checkpoint (needs 'model' and "
                         "meta.model_spec)")
    if int(state["epoch"]) < int(meta["max_epoch"]):
        raise UnfinishedPairError(f"{path}: training stopped at epoch {state['epoch']} of "
                                  f"{meta['max_epoch']}; finish it with train --resume")
    generators = {}
    for prefix, direction in (("g_ab.", pair), ("g_ba.", pair[::-1])):
        generator = ResnetGenerator(ngf=spec["ngf"], blocks=spec["g_blocks"],
                                    dropout=spec["dropout"])
        generator.load_state_dict({k[len(prefix):]: v for k, v in state["model"].items()
                                   if k.startswith(prefix)})
        generators[tuple(direction)] = generator.to(device).eval()
    return generators, {**meta, "epoch": int(state["epoch"])}


def load_cyclegan_translator(run_dir: str | Path, num_cameras: int,
                             device: torch.device | str = "cpu",
                             pairs: Optional[Sequence[Pair]] = None
                             ) -> Tuple[PairTranslator, Tuple[int, int], Dict[str, Any]]:
    """(translator over ``pairs`` (default: all), its (H, W) input size, metadata)."""
    generators: Dict[Tuple[int, int], nn.Module] = {}
    metas = []
    for pair in camera_pairs(num_cameras) if pairs is None else pairs:
        found, meta = load_pair_generators(pair_dir(run_dir, pair), pair, device)
        generators.update(found)
        metas.append(meta)
    sizes = sorted({tuple(meta["image_size"]) for meta in metas})
    if len(sizes) != 1:
        raise ValueError(f"{run_dir}: need pair CycleGANs trained at one size, found "
                         f"{len(metas)} pair(s) with sizes {sizes}")
    meta = {"model": "cyclegan", "pairs": len(metas),
            "epochs": sum(meta["epoch"] for meta in metas),
            "model_spec": metas[0]["model_spec"]}
    return PairTranslator(generators, num_cameras).eval(), sizes[0], meta


def load_translator(path: str | Path, num_cameras: int, device: torch.device | str = "cpu"
                    ) -> Tuple[nn.Module, Tuple[int, int], Dict[str, Any]]:
    """A CycleGAN run folder (holding ``pairs/``) or a StarGAN ``last.pth``, as a translator for
    ``num_cameras`` cameras: (translator, (H, W) input size, metadata with ``model``)."""
    path = Path(path)
    if path.is_dir():
        return load_cyclegan_translator(path, num_cameras, device)
    generator, size, meta = load_generator(path, device)
    if generator.num_cameras != num_cameras:
        raise ValueError(f"{path} was trained for {generator.num_cameras} cameras, the dataset "
                         f"has {num_cameras}")
    return generator, size, {**meta, "model": "stargan"}
