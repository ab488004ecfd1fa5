"""TransReID vision transformers: ViT-B/16, DeiT-S/16 and a CPU-sized variant.

Overlapping patch embedding, learnable position embedding (resized bilinearly when pretrained
weights come from another grid), side-information embedding (SIE) and the jigsaw patch module
(JPM). The blocks are timm's ``Block``; parameter names follow timm, so timm / DeiT / official
ViT checkpoints load with :func:`load_vit_pretrained`. Registered backbones: see ``VIT_SPECS``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from uda_reid.config.sections.data import InputConfig
from uda_reid.config.sections.model import ModelConfig
from uda_reid.config.sections.transreid import TransReIDConfig
from uda_reid.models.backbones.vit_layers import (OverlappingPatchEmbed, SideInformationEmbedding,
                                                  jpm_groups, resize_pos_embed)
from uda_reid.models.registry import BACKBONES
from uda_reid.models.weight_names import pretrained_file
from uda_reid.models.weights import LoadReport, load_state_dict_report, read_state_dict
from uda_reid.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)


class VisionTransformerReID(nn.Module):
    """ViT backbone of TransReID.

    ``forward(x (N, 3, H, W), camids (N,), viewids (N,))`` returns the class token after the
    final norm, (N, D); with JPM on, (N, 1 + k, D): the global class token, then the class
    tokens of the k local groups. The last block serves the global branch; a second copy of it
    (``jpm_block``, ``jpm_norm``) serves the k shuffled groups, as in the paper.
    """

    uses_side_info = True

    def __init__(self, img_size: Tuple[int, int] = InputConfig.SIZE_TRAIN,
                 patch_size: int = TransReIDConfig.PATCH_SIZE,
                 stride: Tuple[int, int] = TransReIDConfig.STRIDE_SIZE, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, drop_path: float = TransReIDConfig.DROP_PATH,
                 num_cameras: int = TransReIDConfig.NUM_CAMERAS,
                 num_views: int = TransReIDConfig.NUM_VIEWS,
                 sie_coef: float = TransReIDConfig.SIE_COEF,
                 sie_target_policy: str = TransReIDConfig.SIE_TARGET_POLICY,
                 sie_camera_map: Sequence[int] = TransReIDConfig.SIE_CAMERA_MAP,
                 jpm: bool = TransReIDConfig.JPM, shift_num: int = TransReIDConfig.SHIFT_NUM,
                 shuffle_groups: int = TransReIDConfig.SHUFFLE_GROUP,
                 num_parts: int = TransReIDConfig.DEVIDE_LENGTH) -> None:
        super().__init__()
        self.out_channels = embed_dim
        self.patch_embed = OverlappingPatchEmbed(img_size, patch_size, stride, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.sie_coef = sie_coef
        self.sie = (SideInformationEmbedding(embed_dim, num_cameras, num_views, sie_target_policy,
                                             sie_camera_map)
                    if num_cameras > 0 or num_views > 0 else None)
        self.jpm = jpm
        self.shift_num, self.shuffle_groups, self.num_parts = shift_num, shuffle_groups, num_parts
        if jpm:
            if self.patch_embed.num_patches < num_parts:
                raise ValueError(f"JPM with {num_parts} groups needs at least as many patches; "
                                 f"the {tuple(img_size)} input has {self.patch_embed.num_patches}")
            self.jpm_block = Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True,
                                   drop_path=rates[-1])
            self.jpm_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                nn.init.zeros_(module.bias)
        if self.jpm:
            self.jpm_block.load_state_dict(self.blocks[-1].state_dict())

    def set_sie_domain(self, domain: str) -> None:
        """``source`` (the cameras SIE was trained on) or ``target`` (another domain's cameras:
        the SIE target policy applies). No effect without SIE."""
        if self.sie is not None:
            self.sie.set_domain(domain)

    def forward(self, x: Tensor, camids: Optional[Tensor] = None,
                viewids: Optional[Tensor] = None) -> Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed
        if self.sie is not None:
            tokens = tokens + self.sie_coef * self.sie(camids, viewids, len(x)).unsqueeze(1)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        global_feat = self.norm(self.blocks[-1](tokens))[:, 0]
        if not self.jpm:
            return global_feat
        local_feats = [self.jpm_norm(self.jpm_block(group))[:, 0]
                       for group in jpm_groups(tokens, self.shift_num, self.shuffle_groups,
                                               self.num_parts)]
        return torch.stack([global_feat, *local_feats], dim=1)


# Keys of classification checkpoints that a ReID backbone has no use for.
_DROPPED_PREFIXES = ("head.", "head_dist.", "pre_logits.", "fc_norm.")


def vit_state_dict_from_checkpoint(checkpoint: Mapping[str, Tensor],
                                   model: VisionTransformerReID) -> Dict[str, Tensor]:
    """Map a flat timm / DeiT / official-ViT state dict onto ``model``'s parameter names.

    Drops classifier keys (``head.*``) and DeiT's distillation token; resizes ``pos_embed``
    bilinearly to the model's patch grid (square source grid, class position kept); copies the
    last block and final norm into the JPM branch. Missing / unexpected keys are left to the
    loader's report. (Wrappers such as ``{"model": ...}`` and ``module.`` are removed by
    :func:`uda_reid.models.weights.read_state_dict`.)
    """
    state = {key: value for key, value in checkpoint.items()
             if not key.startswith(_DROPPED_PREFIXES) and key != "dist_token"}
    num_prefix = 2 if "dist_token" in checkpoint else 1
    own = model.state_dict()
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.shape != own["patch_embed.proj.weight"].shape:
        raise ValueError(f"Pretrained patch_embed.proj.weight has shape {tuple(proj.shape)}, the "
                         f"model needs {tuple(own['patch_embed.proj.weight'].shape)} (patch size "
                         "and width must match the checkpoint)")
    pos = state.get("pos_embed")
    if pos is not None and (pos.shape != own["pos_embed"].shape or num_prefix != 1):
        try:
            state["pos_embed"] = resize_pos_embed(pos, model.patch_embed.grid,
                                                  num_prefix=num_prefix)
        except ValueError as err:
            raise ValueError(f"Pretrained pos_embed {tuple(pos.shape)} cannot be resized to the "
                             f"{model.patch_embed.grid} grid: {err}") from err
    if model.jpm:
        last = f"blocks.{len(model.blocks) - 1}."
        for key, value in list(state.items()):
            if key.startswith(last):
                state["jpm_block." + key[len(last):]] = value
            elif key.startswith("norm."):
                state["jpm_" + key] = value
    return state


def load_vit_pretrained(model: VisionTransformerReID, path: str) -> LoadReport:
    """Load a local ImageNet ViT / DeiT checkpoint into ``model`` and log the key report."""
    state = vit_state_dict_from_checkpoint(
        read_state_dict(path, "MODEL.BACKBONE.PRETRAIN_PATH"), model)
    report = load_state_dict_report(model, state)
    logger.info("Loaded %s into %s: %s", path, type(model).__name__, report)
    return report


@dataclass(frozen=True)
class ViTSpec:
    """Width, depth and heads of one registered ViT variant."""

    embed_dim: int
    depth: int
    num_heads: int


VIT_SPECS: Dict[str, ViTSpec] = {
    "vit_base_patch16": ViTSpec(768, 12, 12),  # ViT-B/16 (Dosovitskiy et al.)
    "deit_small_patch16": ViTSpec(384, 12, 6),  # DeiT-S/16 (Touvron et al.)
    "vit_tiny_reid": ViTSpec(192, 4, 3),  # CPU-sized: trains in seconds on synth-market tiny
}


def build_vit(name: str, **kwargs: object) -> VisionTransformerReID:
    """The registered variant ``name`` (patch size 16) with the given TransReID options."""
    if name not in VIT_SPECS:
        raise UnknownNameError(f"No ViT variant '{name}'; known: {', '.join(VIT_SPECS)}")
    spec = VIT_SPECS[name]
    return VisionTransformerReID(embed_dim=spec.embed_dim, depth=spec.depth,
                                 num_heads=spec.num_heads, **kwargs)


def vit_from_config(name: str, opts: ModelConfig, inp: InputConfig) -> VisionTransformerReID:
    """Variant ``name`` with the options of ``MODEL.TRANSREID`` at ``INPUT.SIZE_TRAIN``,
    ImageNet weights from ``MODEL.BACKBONE.PRETRAIN_PATH`` or ``PRETRAIN_NAME`` when
    ``PRETRAIN`` is on. ``opts`` is the ``MODEL`` section, ``inp`` the ``INPUT`` section.

    ``RE_ARRANGE False`` keeps JPM's groups contiguous (no shift, no shuffle).
    """
    vit = opts.TRANSREID
    if tuple(inp.SIZE_TEST) != tuple(inp.SIZE_TRAIN):
        raise ValueError(f"INPUT.SIZE_TEST {tuple(inp.SIZE_TEST)} must equal "
                         f"INPUT.SIZE_TRAIN {tuple(inp.SIZE_TRAIN)} for a ViT backbone "
                         "(its position embedding has one grid)")
    if vit.SIE_CAMERA and vit.NUM_CAMERAS <= 0:
        raise ValueError("MODEL.TRANSREID.SIE_CAMERA is on but MODEL.TRANSREID.NUM_CAMERAS is "
                         f"{vit.NUM_CAMERAS}; set it to the training set's camera count")
    if vit.SIE_VIEW and vit.NUM_VIEWS <= 0:
        raise ValueError("MODEL.TRANSREID.SIE_VIEW is on but MODEL.TRANSREID.NUM_VIEWS is "
                         f"{vit.NUM_VIEWS}")
    model = build_vit(
        name, img_size=tuple(inp.SIZE_TRAIN), patch_size=vit.PATCH_SIZE,
        stride=tuple(vit.STRIDE_SIZE), drop_path=vit.DROP_PATH,
        num_cameras=vit.NUM_CAMERAS if vit.SIE_CAMERA else 0,
        num_views=vit.NUM_VIEWS if vit.SIE_VIEW else 0, sie_coef=vit.SIE_COEF,
        sie_target_policy=vit.SIE_TARGET_POLICY, sie_camera_map=vit.SIE_CAMERA_MAP,
        jpm=vit.JPM, shift_num=vit.SHIFT_NUM if vit.RE_ARRANGE else 0,
        shuffle_groups=vit.SHUFFLE_GROUP if vit.RE_ARRANGE else 1,
        num_parts=vit.DEVIDE_LENGTH)
    if opts.BACKBONE.PRETRAIN:
        load_vit_pretrained(model, pretrained_file(opts.BACKBONE))
    return model


def _register(name: str) -> None:
    def build(opts: ModelConfig, inp: InputConfig) -> VisionTransformerReID:
        return vit_from_config(name, opts, inp)

    spec = VIT_SPECS[name]
    build.__doc__ = (f"{name}: TransReID ViT (width {spec.embed_dim}, depth {spec.depth}, "
                     f"{spec.num_heads} heads) from the MODEL and INPUT sections.")
    BACKBONES.register(name)(build)


for _name in VIT_SPECS:
    _register(_name)
