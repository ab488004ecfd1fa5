"""Config helpers: the CAMSTYLE section mapped onto the StarGAN networks; checkpoint specs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from camstyle.model import Discriminator, Generator, StarGAN
from uda_reid.config.sections.camstyle import CamStyleConfig
from uda_reid.utils.safe_load import load_weights_file

SPEC_KEYS = ("num_cameras", "image_size", "g_conv_dim", "g_repeat_num", "d_conv_dim",
             "d_repeat_num")
# The networks' options a spec written before they existed was built without.
SPEC_BEFORE_OPTIONS = {"g_skip": False, "g_upsample": "deconv", "d_projection": False}


def model_spec(cs: CamStyleConfig, num_cameras: int) -> Dict[str, Any]:
    """What rebuilding the networks needs (stored in every checkpoint)."""
    return {"num_cameras": num_cameras, "image_size": list(cs.IMAGE_SIZE),
            "g_conv_dim": cs.G_CONV_DIM, "g_repeat_num": cs.G_REPEAT_NUM, "g_skip": cs.G_SKIP,
            "g_upsample": cs.G_UPSAMPLE,
            "d_conv_dim": cs.D_CONV_DIM, "d_repeat_num": cs.D_REPEAT_NUM,
            "d_projection": cs.D_PROJECTION}


def build_generator(spec: Dict[str, Any]) -> Generator:
    spec = {**SPEC_BEFORE_OPTIONS, **spec}
    return Generator(spec["num_cameras"], spec["g_conv_dim"], spec["g_repeat_num"],
                     spec["g_skip"], spec["g_upsample"])


def build_discriminator(spec: Dict[str, Any]) -> Discriminator:
    spec = {**SPEC_BEFORE_OPTIONS, **spec}
    return Discriminator(spec["num_cameras"], tuple(spec["image_size"]), spec["d_conv_dim"],
                         spec["d_repeat_num"], spec["d_projection"])


def build_stargan(spec: Dict[str, Any]) -> StarGAN:
    """Generator then critic (in this order: it decides what their initial weights draw)."""
    return StarGAN(build_generator(spec), build_discriminator(spec))


def load_generator(path: str | Path, device: torch.device | str = "cpu"
                   ) -> Tuple[Generator, Tuple[int, int], Dict[str, Any]]:
    """(generator in eval mode, its (H, W) input size, the checkpoint's metadata with
    ``iteration``, ``train_seconds`` and ``train_cpu_seconds``).

    Reads the shared trainer's ``last.pth`` (``meta.model_spec``, weights ``generator.*`` of
    ``model``) and the checkpoints of the StarGAN loop before it (``model_spec``, weights in
    ``trainer.generator``), so generators trained earlier still generate."""
    path = Path(path)
    state = load_weights_file(path, "CamStyle checkpoint")
    if not isinstance(state, dict):
        state = {}
    if "trainer" in state:  # the earlier loop's own checkpoint (camstyle.loop_checkpoint)
        spec, weights = state.get("model_spec"), state["trainer"].get("generator", {})
        meta = {k: v for k, v in state.items() if k not in ("trainer", "stream", "rng")}
        meta["iteration"] = int(state["trainer"].get("iteration", 0))
    else:
        meta = dict(state.get("meta", {}))
        spec = meta.get("model_spec")
        weights = {k[len("generator."):]: v for k, v in state.get("model", {}).items()
                   if k.startswith("generator.")}
        clock = state.get("hooks", {}).get("WallClockHook", {})
        meta.update(iteration=int(state.get("epoch", 0)), train_seconds=clock.get("elapsed"),
                    train_cpu_seconds=clock.get("cpu_elapsed"))
    if not isinstance(spec, dict) or any(k not in spec for k in SPEC_KEYS) or not weights:
        raise ValueError(f"{path} is not a CamStyle StarGAN checkpoint (needs the model spec "
                         f"with {', '.join(SPEC_KEYS)} and the generator's weights)")
    generator = build_generator(spec)
    generator.load_state_dict(weights)
    return generator.to(device).eval(), tuple(spec["image_size"]), meta
