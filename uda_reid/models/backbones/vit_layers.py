"""TransReID building blocks: overlapping patches, position-grid resizing, SIE and the JPM
token rearrangement (He et al., "TransReID", ICCV 2021).

The transformer blocks themselves are timm's (``timm.models.vision_transformer.Block``).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIE_POLICIES = ("off", "mean", "map")


def patch_grid(size: Tuple[int, int], patch_size: int, stride: Tuple[int, int]) -> Tuple[int, int]:
    """Rows and columns of patches cut from an image of ``size`` = (H, W).

    A P x P window moved by S (no padding) fits ``floor((H - P) / S_h) + 1`` times down and
    ``floor((W - P) / S_w) + 1`` times across; the token count is their product. TransReID's
    256x128 input with P=16, S=12 gives 21 x 10 = 210 patches (S=16: 16 x 8 = 128).
    """
    height, width = size
    if height < patch_size or width < patch_size:
        raise ValueError(f"Image size {tuple(size)} is smaller than the patch size {patch_size}")
    if min(stride) < 1:
        raise ValueError(f"Patch stride must be positive, got {tuple(stride)}")
    return (height - patch_size) // stride[0] + 1, (width - patch_size) // stride[1] + 1


class OverlappingPatchEmbed(nn.Module):
    """Image (N, 3, H, W) -> patch tokens (N, n_h * n_w, D) by a P x P conv with stride S.

    With S < P neighbouring patches overlap by P - S pixels. The parameter names
    (``proj.weight``, ``proj.bias``) are timm's, so pretrained ViT weights load directly.
    """

    def __init__(self, img_size: Tuple[int, int], patch_size: int, stride: Tuple[int, int],
                 in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = tuple(img_size)
        self.patch_size = patch_size
        self.grid = patch_grid(self.img_size, patch_size, stride)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=tuple(stride))

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"Input size {tuple(x.shape[-2:])} differs from the size "
                             f"{self.img_size} the position embedding was built for "
                             "(INPUT.SIZE_TRAIN / INPUT.SIZE_TEST)")
        return self.proj(x).flatten(2).transpose(1, 2)


def resize_pos_embed(pos_embed: Tensor, new_grid: Tuple[int, int],
                     old_grid: Optional[Tuple[int, int]] = None, num_prefix: int = 1) -> Tensor:
    """Bilinearly resample the patch part of a position embedding to ``new_grid``.

    ``pos_embed`` is (1, num_prefix + h * w, D): prefix tokens (class, and distillation for
    DeiT) first, then the patch grid in row-major order. The first prefix token (class) is
    kept unchanged; other prefix tokens are dropped. ``old_grid`` defaults to a square grid.
    Returns (1, 1 + new_h * new_w, D).
    """
    cls_pos, grid_pos = pos_embed[:, :1], pos_embed[:, num_prefix:]
    count = grid_pos.shape[1]
    if old_grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"Position embedding has {count} patch positions, not a square grid; "
                             "give its (rows, cols)")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != count:
        raise ValueError(f"Position grid {tuple(old_grid)} does not hold {count} positions")
    dim = grid_pos.shape[-1]
    grid = grid_pos.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([cls_pos, grid], dim=1)


class SideInformationEmbedding(nn.Module):
    """Learnable camera / viewpoint embeddings (SIE), one (D,) vector per side-information value.

    With cameras and views both on there is one vector per (camera, view) pair; with one of
    them, one per camera or per view. ``forward`` returns (N, D); the backbone scales it by the
    SIE coefficient and adds it to every token.

    The embeddings are sized by the *source* cameras. When the backbone is told that its inputs
    come from another domain (``domain = "target"``), the camera part follows ``target_policy``:
    ``off`` adds nothing, ``mean`` uses the mean over the source cameras (default: the network
    keeps the average offset it was trained with, without claiming a camera), ``map`` looks the
    target camera up in ``camera_map`` (target camera i -> source camera camera_map[i]).
    """

    def __init__(self, dim: int, num_cameras: int = 0, num_views: int = 0,
                 target_policy: str = "mean", camera_map: Sequence[int] = ()) -> None:
        super().__init__()
        if num_cameras <= 0 and num_views <= 0:
            raise ValueError("SIE needs cameras or views (both counts are 0)")
        if target_policy not in SIE_POLICIES:
            raise ValueError(f"SIE target policy '{target_policy}' is not one of {SIE_POLICIES}")
        if target_policy == "map" and not camera_map:
            raise ValueError("SIE target policy 'map' needs a camera map (target cam -> source cam)")
        bad = [c for c in camera_map if not 0 <= c < num_cameras]
        if bad:
            raise ValueError(f"SIE camera map entries {bad} are not source cameras "
                             f"0..{num_cameras - 1}")
        self.num_cameras = num_cameras
        self.num_views = num_views
        self.target_policy = target_policy
        self.domain = "source"
        self.register_buffer("camera_map", torch.as_tensor(list(camera_map), dtype=torch.long),
                             persistent=False)
        table = torch.empty(max(num_cameras, 1) * max(num_views, 1), dim)
        self.embed = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))

    def set_domain(self, domain: str) -> None:
        """``source``: camera ids index the table; ``target``: ``target_policy`` applies."""
        if domain not in ("source", "target"):
            raise ValueError(f"SIE domain must be 'source' or 'target', got '{domain}'")
        self.domain = domain

    def forward(self, camids: Optional[Tensor] = None, viewids: Optional[Tensor] = None,
                batch_size: int = 1) -> Tensor:
        """Embeddings (N, D) for camera ids (N,) and view ids (N,); N is ``batch_size`` when
        neither is needed (target domain with policy ``off`` or ``mean`` and no views)."""
        given = viewids if viewids is not None else camids
        n = len(given) if given is not None else batch_size
        table = self.embed.view(max(self.num_cameras, 1), max(self.num_views, 1), -1)
        views = (self._ids(viewids, self.num_views, "view") if self.num_views
                 else torch.zeros(n, dtype=torch.long, device=table.device))
        if not self.num_cameras:
            cams = torch.zeros_like(views)
        elif self.domain == "source":
            cams = self._ids(camids, self.num_cameras, "camera")
        elif self.target_policy == "map":
            cams = self.camera_map[self._ids(camids, len(self.camera_map), "target camera")]
        elif self.target_policy == "mean":
            return table.mean(dim=0)[views]
        else:
            return table.new_zeros(n, table.shape[-1])
        return table[cams, views]

    @staticmethod
    def _ids(ids: Optional[Tensor], count: int, kind: str) -> Tensor:
        if ids is None:
            raise ValueError(f"SIE is on for {kind}s but no {kind} ids were given")
        ids = torch.as_tensor(ids).long().reshape(-1)
        bad = ids[(ids < 0) | (ids >= count)]
        if bad.numel():
            raise ValueError(f"SIE {kind} id {int(bad[0])} is outside 0..{count - 1}; for "
                             "another domain's cameras set the backbone's SIE domain to "
                             "'target' (MODEL.TRANSREID.SIE_TARGET_POLICY)")
        return ids


def jpm_permutation(num_patches: int, shift: int, groups: int) -> Tensor:
    """Patch order (num_patches,) after JPM's shift and patch shuffle.

    Shift: the first ``shift`` patches move to the end. Shuffle: the shifted sequence is cut
    into ``groups`` contiguous chunks (sizes differ by at most one) that are interleaved, the
    i-th patch of each chunk in turn: for divisible lengths this is the
    (groups, L/groups) -> (L/groups, groups) transpose of ShuffleNet's channel shuffle.
    Every patch appears exactly once. (This is the paper's shift by m; the official code's
    slicing moves m - 1 patches.)
    """
    if groups < 1:
        raise ValueError(f"JPM shuffle groups must be >= 1, got {groups}")
    # Plain Python on the static length, so that traced / exported graphs hold a constant.
    start = shift % num_patches if num_patches else 0
    shifted = list(range(start, num_patches)) + list(range(start))
    base, extra = divmod(num_patches, groups)  # torch.tensor_split's chunk sizes
    rank = [i for g in range(groups) for i in range(base + (g < extra))]  # place in its chunk
    order = sorted(range(num_patches), key=rank.__getitem__)  # stable: chunk order kept
    return torch.tensor([shifted[i] for i in order], dtype=torch.long)


def jpm_groups(tokens: Tensor, shift: int, shuffle_groups: int, num_parts: int) -> List[Tensor]:
    """Split the rearranged patch tokens into ``num_parts`` groups, each led by the class token.

    ``tokens`` is (N, 1 + L, D) with the class token first. Returns ``num_parts`` tensors
    (N, 1 + L_i, D), the L_i differing by at most one and summing to L (the official code uses
    L // k patches per group and drops the rest, e.g. 2 of 210).
    """
    cls_token, patches = tokens[:, :1], tokens[:, 1:]
    if patches.shape[1] < num_parts:
        raise ValueError(f"JPM needs at least {num_parts} patches, got {patches.shape[1]}")
    order = jpm_permutation(int(patches.shape[1]), shift, shuffle_groups).to(tokens.device)
    patches = patches[:, order]
    return [torch.cat([cls_token, part], dim=1) for part in patches.tensor_split(num_parts, 1)]
