"""Adaptive three-path block of the decoder (LightMedSeg §3.6, Eqs. 17-21).

Three parallel branches over the fused features: a depthwise 3x3x3 conv (local neighbourhoods, organ
boundaries), a GhostConv3D 3x3x3 (multi-scale context at half the cost of a dense conv) and a pointwise
1x1x1 conv (channel mixing for smooth interiors). A shared 1x1x1 conv predicts per-voxel logits over the
three, softmax-normalised, and the output is their weighted sum.

``kernel_size`` (int or per axis, default 3) is the kernel of the depthwise and ghost branches: the stage's
kernel of the resolution schedule, ``(1, 3, 3)`` where nnU-Net's plans keep convolutions in-plane.

Shapes: ``(B, C, D, H, W) -> (B, C, D, H, W)``; with ``return_weights=True`` also ``(B, 3, D, H, W)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import as_triple, check_positive_ints
from .ghost_conv import GhostConv3D
from ..convolutions import Conv3d, PointwiseConv3d
from ..elementwise import addcmul


class AdaptiveThreePath(nn.Module):
    def __init__(self, channels: int, dense: bool = False, norm_groups: int = 4, kernel_size=3) -> None:
        super().__init__()
        check_positive_ints("AdaptiveThreePath", channels=channels)
        k = as_triple(kernel_size, "AdaptiveThreePath", "kernel_size")
        pad = tuple(v // 2 for v in k)
        self.depthwise = Conv3d(channels, channels, k, 1, pad, groups=channels)
        self.ghost = GhostConv3D(channels, channels, k, 1, norm_groups, activation=True, dense=dense)
        self.pointwise = PointwiseConv3d(channels, channels)
        self.blend = PointwiseConv3d(channels, 3)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        w = torch.softmax(self.blend(x), dim=1)
        # w0 * depthwise + w1 * ghost + w2 * pointwise in three full-size ops (addcmul: a + b * c) instead of five
        # split, not slices: its backward (a cat) keeps the gradient channels-last (a slice's writes into zeros)
        w0, w1, w2 = w.split(1, dim=1)
        y = addcmul(addcmul(w2 * self.pointwise(x), w1, self.ghost(x)), w0, self.depthwise(x))
        if return_weights:
            return y, w
        return y
