"""Anchor-relative spatial position bias, factorised by axis (LightMedSeg §3.6, Eqs. 14-15).

For voxel ``x`` with normalised coordinates ``(c_d, c_h, c_w)`` (voxel centres, ``(i + 0.5) / L``) and anchor
``a_n``, the signed cumulative offset is ``delta_n(x) = (c_d - a_nd) + (c_h - a_nh) + (c_w - a_nw)``; the
``N`` offsets are projected by a 1x1x1 convolution ``W (C x N)`` to the stage width and added to the
upsampled decoder features. Because both steps are linear, ``W delta(x) + b`` equals the broadcast sum of
three per-axis terms ``W (c_axis - a_axis)``, each of shape ``(B, C, L_axis)``. We build only those, so
neither the ``N x 3 x D x H x W`` displacement tensor nor the ``N x D x H x W`` offset map is materialised:
the cost is ``O(C (D + H + W))`` memory instead of ``O(N D H W)``.

Coordinates are normalised per axis (each axis spans [0, 1] whatever its number of voxels), like the anchors:
on thick-slice data a 5-voxel bottleneck z axis and a 32-voxel in-plane axis are both measured in fractions of
the (padded) volume, so the same anchor means the same physical place at every decoder stage whatever the
per-axis strides.

Shapes: ``anchors (B, N, 3)``, spatial size ``(D, H, W)`` -> bias ``(B, C, D, H, W)`` (a broadcast sum).
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_positive_ints


class AnchorPositionBias(nn.Module):
    def __init__(self, num_anchors: int, channels: int) -> None:
        super().__init__()
        check_positive_ints("AnchorPositionBias", num_anchors=num_anchors, channels=channels)
        self.proj = nn.Conv3d(num_anchors, channels, 1)  # the paper's 1x1x1 projection; used as a matrix

    def _axis_term(self, anchors_axis: torch.Tensor, length: int) -> torch.Tensor:
        # anchors_axis (B, N) -> projected offsets (B, C, length)
        coords = (torch.arange(length, device=anchors_axis.device, dtype=anchors_axis.dtype) + 0.5) / length
        offsets = coords[None, None, :] - anchors_axis[:, :, None]  # (B, N, L)
        w = self.proj.weight.flatten(1).to(offsets.dtype)  # (C, N)
        return torch.einsum("cn,bnl->bcl", w, offsets)

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Return ``x + bias`` (bias never materialised on its own at full size)."""
        d, h, w = x.shape[2:]
        td = self._axis_term(anchors[:, :, 0], d)[:, :, :, None, None]
        th = self._axis_term(anchors[:, :, 1], h)[:, :, None, :, None]
        tw = self._axis_term(anchors[:, :, 2], w)[:, :, None, None, :]
        b = self.proj.bias.to(x.dtype)[None, :, None, None, None]
        # (td + th) is (B, C, D, H, 1): small; the one full-size op is the final add into x
        return x + ((td + th + b).to(x.dtype) + tw.to(x.dtype))
