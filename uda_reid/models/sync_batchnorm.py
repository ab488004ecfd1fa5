"""Batch normalisation over the global batch of a distributed run, on any device.

torch's ``nn.SyncBatchNorm`` runs only on GPUs; :class:`SyncBatchNorm` uses it there and, on
the CPU (Gloo), computes the same statistics with differentiable all-reduces. In one process,
or in eval mode, both are plain batch norm.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from uda_reid.utils.distributed import all_reduce_sum, all_reduce_with_grad, is_distributed


class SyncBatchNorm(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` (same parameters, buffers and state-dict keys) that also runs on
    the CPU: mean and biased variance of each channel over every rank's batch, running
    statistics updated with the unbiased variance, as batch norm over the global batch."""

    def forward(self, input: Tensor) -> Tensor:
        if input.device.type == "cuda" or not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = float(all_reduce_sum(input.new_tensor([input.numel() / input.shape[1]]))[0])
        mean = all_reduce_with_grad(input.sum(dims)) / count
        centered = input - mean.view(shape)
        var = all_reduce_with_grad((centered * centered).sum(dims)) / count
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        unbiased = var * count / max(count - 1.0, 1.0)
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm (1d/2d/3d, or torch's SyncBatchNorm) replaced by a
    :class:`SyncBatchNorm` sharing its parameters, buffers, train flag and ``requires_grad``;
    converts in place below the top module and returns the (possibly new) top module."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module,
                                                                               SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean, sync.running_var = module.running_mean, module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
