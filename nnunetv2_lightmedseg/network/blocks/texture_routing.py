"""Texture-routed two-path block (LightMedSeg §3.4, Eqs. 7-9).

``y = T_s * detail(x) + (1 - T_s) * smooth(x)`` where ``detail`` is a depthwise 3x3x3 convolution (fine
boundary structure), ``smooth`` a pointwise 1x1x1 convolution (cheap channel mixing for homogeneous
interiors) and ``T_s`` the LSPM texture map resampled (trilinear) to this stage, broadcast over channels.
Computed as ``torch.lerp(smooth, detail, T_s)``: same value, one full-size op instead of three.

``kernel_size`` (int or per axis, default 3) is the depthwise kernel: the stage's kernel of the resolution
schedule, ``(1, 3, 3)`` where nnU-Net's plans keep convolutions in-plane.

Shapes: ``x (B, C, D, H, W)``, ``t (B, 1, D, H, W)`` -> ``(B, C, D, H, W)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import as_triple, check_positive_ints
from ..convolutions import Conv3d, PointwiseConv3d


class TextureRoutedBlock(nn.Module):
    def __init__(self, channels: int, kernel_size=3) -> None:
        super().__init__()
        check_positive_ints("TextureRoutedBlock", channels=channels)
        k = as_triple(kernel_size, "TextureRoutedBlock", "kernel_size")
        pad = tuple(v // 2 for v in k)
        self.detail = Conv3d(channels, channels, k, 1, pad, groups=channels)
        self.smooth = PointwiseConv3d(channels, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.smooth(x)
        # lerp needs one dtype (under autocast the convs return bf16/fp16, the texture map stays fp32)
        return torch.lerp(s, self.detail(x), t.to(s.dtype) if isinstance(t, torch.Tensor) else t)
