"""Config helpers: the CAMSTYLE section mapped onto models and the trainer; checkpoint specs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from camstyle.model import Discriminator, Generator
from camstyle.trainer import StarGANTrainer
from uda_reid.config.sections.camstyle import CamStyleConfig
from uda_reid.utils.safe_load import load_weights_file

SPEC_KEYS = ("num_cameras", "image_size", "g_conv_dim", "g_repeat_num", "d_conv_dim",
             "d_repeat_num")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_spec(cs: CamStyleConfig, num_cameras: int) -> Dict[str, Any]:
    """What rebuilding the networks needs (stored in every checkpoint)."""
    return {"num_cameras": num_cameras, "image_size": list(cs.IMAGE_SIZE),
            "g_conv_dim": cs.G_CONV_DIM, "g_repeat_num": cs.G_REPEAT_NUM, "g_skip": cs.G_SKIP,
            "g_upsample": cs.G_UPSAMPLE,
            "d_conv_dim": cs.D_CONV_DIM, "d_repeat_num": cs.D_REPEAT_NUM,
            "d_projection": cs.D_PROJECTION}


def build_generator(spec: Dict[str, Any]) -> Generator:
    return Generator(spec["num_cameras"], spec["g_conv_dim"], spec["g_repeat_num"],
                     spec.get("g_skip", False), spec.get("g_upsample", "deconv"))


def build_discriminator(spec: Dict[str, Any]) -> Discriminator:
    return Discriminator(spec["num_cameras"], tuple(spec["image_size"]), spec["d_conv_dim"],
                         spec["d_repeat_num"], spec.get("d_projection", False))


def build_trainer(cs: CamStyleConfig, num_cameras: int, device: torch.device | str
                  ) -> StarGANTrainer:
    """Networks, optimisers and loss weights from the CAMSTYLE section."""
    spec = model_spec(cs, num_cameras)
    return StarGANTrainer(build_generator(spec), build_discriminator(spec), g_lr=cs.G_LR,
                          d_lr=cs.D_LR, betas=cs.BETAS, lambda_cls=cs.LAMBDA_CLS,
                          lambda_rec=cs.LAMBDA_REC, lambda_gp=cs.LAMBDA_GP,
                          n_critic=cs.N_CRITIC, max_iters=cs.MAX_ITERS,
                          lr_decay_iters=cs.LR_DECAY_ITERS, device=device)


def load_generator(path: str | Path, device: torch.device | str = "cpu"
                   ) -> Tuple[Generator, Tuple[int, int], Dict[str, Any]]:
    """(generator in eval mode, its (H, W) input size, the checkpoint's metadata)."""
    path = Path(path)
    state = load_weights_file(path, "CamStyle checkpoint")
    spec = state.get("model_spec") if isinstance(state, dict) else None
    if not isinstance(spec, dict) or any(k not in spec for k in SPEC_KEYS):
        raise ValueError(f"{path} is not a CamStyle checkpoint (needs 'model_spec' with "
                         f"{', '.join(SPEC_KEYS)} and 'trainer')")
    generator = build_generator(spec)
    generator.load_state_dict(state["trainer"]["generator"])
    meta = {k: v for k, v in state.items() if k not in ("trainer", "stream", "rng")}
    meta["iteration"] = int(state["trainer"]["iteration"])
    return generator.to(device).eval(), tuple(spec["image_size"]), meta
