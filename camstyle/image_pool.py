"""The pool of generated images CycleGAN's discriminators are trained on (Shrivastava et al.,
CVPR 2017; CycleGAN sec. 4): the discriminator sees a mix of the newest and earlier fakes."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch


class ImagePool:
    """Holds up to ``size`` generated images (3, H, W).

    ``query(images (N, 3, H, W))`` returns N images: while the pool is filling, each new image
    is stored and returned; once full, each new image is, with probability 1/2, returned as
    is, else swapped with a uniformly chosen stored one, which is returned instead. Draws come
    from torch's global generator (saved with a checkpoint's RNG states). ``size`` 0: images
    pass through.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"image pool size must be >= 0, got {size}")
        self.size = size
        self.images: List[torch.Tensor] = []

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                slot = int(torch.randint(len(self.images), ()))
                out.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> Dict[str, Any]:
        return {"size": self.size, "images": [image.cpu() for image in self.images]}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device | str = "cpu"
                        ) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"image pool state of size {state['size']}, this pool {self.size}")
        self.images = [image.to(device) for image in state["images"]]
