"""Parameters and FLOPs of the ViT backbones (``tools/benchmark.py flops``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image in eval mode
(a multiply-add counts 2; GMACs = GFLOPs / 2) and checked against the closed-form count of the
same network: patch embedding ``n_p * D * 3 * P^2`` and per block ``12 n D^2 + 2 n^2 D``
multiply-adds for ``n`` tokens (qkv 3, projection 1, MLP 8; attention scores and weighted sum).
"""
from __future__ import annotations

import argparse
from typing import List, Sequence, Tuple

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from uda_reid.benchmarks import BENCHMARKS
from uda_reid.models.backbones.vit import VIT_SPECS, VisionTransformerReID, build_vit
from uda_reid.models.backbones.vit_layers import jpm_groups


def count_flops(model: torch.nn.Module, size: Tuple[int, int]) -> int:
    """FLOPs of ``model`` on one (1, 3, H, W) image (camera 0), counted op by op.

    Attention runs on PyTorch's math kernel so that its two matrix products are counted
    (fused CPU kernels are invisible to the counter).
    """
    model.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        images = torch.zeros(1, 3, *size)
        if getattr(model, "uses_side_info", False):
            model(images, torch.zeros(1, dtype=torch.long))
        else:
            model(images)
    return counter.get_total_flops()


def analytic_vit_flops(model: VisionTransformerReID) -> int:
    """Closed-form FLOPs (2 per multiply-add) of ``model``'s forward on one image."""
    dim = model.out_channels
    mlp = model.blocks[0].mlp.fc1.out_features

    def block(n: int) -> int:
        return n * dim * (3 * dim + dim + 2 * mlp) + 2 * n * n * dim

    patches = model.patch_embed.num_patches
    macs = patches * dim * model.patch_embed.proj.weight[0].numel()
    macs += len(model.blocks) * block(1 + patches)
    if model.jpm:
        tokens = torch.zeros(1, 1 + patches, 1)
        macs += sum(block(g.shape[1]) for g in jpm_groups(tokens, model.shift_num,
                                                           model.shuffle_groups, model.num_parts))
    return 2 * macs


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_table(variants: Sequence[str], size: Tuple[int, int], strides: Sequence[int]) -> str:
    """Markdown table: patches, parameters and GFLOPs without / with JPM per variant and
    stride, plus the counted / closed-form FLOP ratio (1.000 when both agree)."""
    rows: List[str] = [
        f"| backbone | stride | patches ({size[0]}x{size[1]}) | params (M) | GFLOPs "
        "| params JPM (M) | GFLOPs JPM | counted / closed form |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in variants:
        for stride in strides:
            plain = build_vit(name, img_size=size, stride=(stride, stride))
            jpm = build_vit(name, img_size=size, stride=(stride, stride), jpm=True)
            counted = (count_flops(plain, size), count_flops(jpm, size))
            ratio = max((c / analytic_vit_flops(m) for c, m in zip(counted, (plain, jpm))),
                        key=lambda r: abs(r - 1))
            rows.append(
                f"| {name} | {stride} | {plain.patch_embed.num_patches} "
                f"| {parameter_count(plain) / 1e6:.2f} | {counted[0] / 1e9:.2f} "
                f"| {parameter_count(jpm) / 1e6:.2f} | {counted[1] / 1e9:.2f} | {ratio:.3f} |")
    return "\n".join(rows)


@BENCHMARKS.register("flops")
class ModelFlops:
    """Parameters / FLOPs table of the ViT backbones (markdown)."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
        parser.add_argument("--strides", type=int, nargs="+", default=(16, 12))
        parser.add_argument("--variants", nargs="+", default=list(VIT_SPECS),
                            choices=list(VIT_SPECS))

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        torch.manual_seed(0)
        print(flops_table(args.variants, tuple(args.size), args.strides))
        return 0
