"""Pointwise (1x1x1) and patch-expanding (kernel = stride) convolutions run as one matrix product over
channels-last memory (a speed rewrite of ``nn.Conv3d(k=1)`` and ``nn.ConvTranspose3d(k=s, s)``; same
mathematics, same parameters, same state-dict keys and shapes).

Why (issue 10, measured with ``torch.profiler`` on the 2-core CPU): on a ``torch.channels_last_3d`` tensor a
1x1x1 convolution is a plain matrix product ``(voxels x C_in) @ (C_in x C_out)``, and a transposed convolution
whose kernel equals its stride is one too, ``(voxels x C_in) @ (C_in x prod(stride) C_out)`` followed by a
3-D pixel shuffle. PyTorch's ``Conv3d`` does not take that route on the CPU: below its size heuristics (one
thread; batch 1 with small grids) it sends 1x1x1 convolutions to the non-oneDNN ``slow_conv3d`` path, and
transposed convolutions to ``slow_conv_transpose3d``; both return the *default* memory format, so every
following oneDNN convolution first copies its input back to channels-last (the layout copies of the profile).
``F.linear`` on the channels-last view keeps the layout, runs multi-threaded BLAS and allocates nothing else.

The matrix-product route is taken only on the CPU for a channels-last input (LightMedSeg converts its input on
entry, see :class:`~nnunetv2_lightmedseg.network.lightmedseg.LightMedSeg`); anywhere else (CUDA, the legacy ONNX
exporter's trace, a default-layout tensor) the parent class's convolution runs, so exported graphs and GPU
kernels are unchanged. ``torch.utils.flop_counter`` counts ``2 x MACs`` for both routes, so the network's
published FLOPs do not move.

Shapes: :class:`PointwiseConv3d` ``(B, C_in, D, H, W) -> (B, C_out, D, H, W)``;
:class:`PatchExpandConv3d` ``(B, C_in, D, H, W) -> (B, C_out, s_D D, s_H H, s_W W)`` with stride ``s`` (an int or
one per axis; an axis with stride 1 is not upsampled).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_positive_ints
from ..layout import is_channels_last


class PointwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(in_channels, out_channels, 1)``, run as ``F.linear`` over the channel axis on channels-last
    CPU tensors (see the module docstring). Parameters ``weight (C_out, C_in, 1, 1, 1)`` and ``bias (C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        check_positive_ints("PointwiseConv3d", in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_channels_last(x):
            return super().forward(x)
        # (B, D, H, W, C) is a contiguous view of a channels-last tensor; the result's permute is channels-last
        y = F.linear(x.permute(0, 2, 3, 4, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 4, 1, 2, 3)


class PatchExpandConv3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d(in_channels, out_channels, kernel_size=stride, stride=stride)``: every input voxel
    writes its own non-overlapping ``s_D x s_H x s_W`` block, so on channels-last CPU tensors it runs as one
    ``F.linear`` to ``prod(stride) * C_out`` channels and a 3-D pixel shuffle (see the module docstring).
    Parameters ``weight (C_in, C_out, s_D, s_H, s_W)`` and ``bias (C_out)``, as ``nn.ConvTranspose3d``'s."""

    def __init__(self, in_channels: int, out_channels: int, stride: Union[int, Sequence[int]] = 2) -> None:
        check_positive_ints("PatchExpandConv3d", in_channels=in_channels, out_channels=out_channels)
        s = (stride,) * 3 if isinstance(stride, int) else tuple(int(v) for v in stride)
        if len(s) != 3 or any(v < 1 for v in s):
            raise ValueError(f"PatchExpandConv3d: stride must be a positive int or one per axis (D, H, W), "
                             f"got {stride!r}")
        super().__init__(in_channels, out_channels, s, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_channels_last(x):
            return super().forward(x)
        b, _, d, h, w = x.shape
        sd, sh, sw = self.stride
        o = self.out_channels
        # columns ordered (i, j, k, o): the output channel stays innermost through the shuffle, and the bias is
        # the same for every (i, j, k), so it repeats into the matrix product
        weight = self.weight.permute(0, 2, 3, 4, 1).reshape(self.in_channels, sd * sh * sw * o).t()
        bias = None if self.bias is None else self.bias.repeat(sd * sh * sw)
        y = F.linear(x.permute(0, 2, 3, 4, 1), weight, bias)  # (B, D, H, W, sd*sh*sw*o)
        y = y.view(b, d, h, w, sd, sh, sw, o).permute(0, 1, 4, 2, 5, 3, 6, 7)
        y = y.reshape(b, d * sd, h * sh, w * sw, o)
        return y.permute(0, 4, 1, 2, 3)
