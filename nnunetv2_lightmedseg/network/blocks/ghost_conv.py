"""GhostConv3D (LightMedSeg §3.1; Han et al., GhostNet, CVPR 2020).

A ghost convolution produces half of its output channels with an ordinary (possibly strided) convolution
(the *primary* features) and synthesises the other half from those with a cheap depthwise convolution
(the *ghost* features). The two halves are concatenated and group-normalised. With ghost ratio 2 this
costs about half the parameters and MACs of a dense convolution with the same output width.

Shapes: ``(B, in_channels, D, H, W) -> (B, out_channels, D', H', W')`` with ``D' = ceil(D / stride)``
(``padding = kernel_size // 2``). ``kernel_size`` and ``stride`` are an int or one value per axis (D, H, W):
LightMedSeg uses in-plane ``(1, 3, 3)`` kernels and ``(1, 2, 2)`` strides where nnU-Net's plans do (see
:mod:`nnunetv2_lightmedseg.network.schedule`); the depthwise ghost conv uses the same kernel, stride 1.

``dense=True`` swaps the block for a plain ``Conv3d -> GroupNorm [-> SiLU]`` with the same interface:
that is the paper's "Standard Conv" / "w/o GhostConv3D" variant (0.66M parameters).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ..checks import as_triple, check_positive_ints
from ..convolutions import Conv3d


class GhostConv3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Sequence[int]] = 3,
        stride: Union[int, Sequence[int]] = 1,
        norm_groups: int = 4,
        activation: bool = True,
        dense: bool = False,
    ) -> None:
        super().__init__()
        check_positive_ints("GhostConv3D", in_channels=in_channels, out_channels=out_channels, norm_groups=norm_groups)
        if out_channels % 2:
            raise ValueError(f"GhostConv3D: out_channels must be even (half primary, half ghost features), "
                             f"got {out_channels}")
        if out_channels % norm_groups:
            raise ValueError(f"GhostConv3D: out_channels must be divisible by norm_groups for GroupNorm, got "
                             f"out_channels={out_channels}, norm_groups={norm_groups}")
        ks = as_triple(kernel_size, "GhostConv3D", "kernel_size")
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"GhostConv3D: kernel_size must be odd (one int, or one per axis D, H, W) so that the "
                             f"padding k // 2 keeps the grid aligned, got {kernel_size!r}")
        kernel_size = ks
        pad = tuple(k // 2 for k in ks)
        stride = as_triple(stride, "GhostConv3D", "stride")
        self.dense = dense
        if dense:
            self.primary = Conv3d(in_channels, out_channels, kernel_size, stride, pad)
            self.cheap = None
        else:
            half = out_channels // 2
            self.primary = Conv3d(in_channels, half, kernel_size, stride, pad)
            # depthwise: every primary channel synthesises exactly one ghost channel
            self.cheap = Conv3d(half, half, kernel_size, 1, pad, groups=half)
        self.norm = nn.GroupNorm(norm_groups, out_channels)
        self.act = nn.SiLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        if self.cheap is not None:
            y = torch.cat((y, self.cheap(y)), dim=1)
        return self.act(self.norm(y))
