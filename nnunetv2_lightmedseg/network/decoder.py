"""Decoder stage of LightMedSeg (§3.6).

``up`` (transposed conv k2 s2, or a 1x1x1 conv for the last stage, which stays at the stem's grid — see
:class:`~nnunetv2_lightmedseg.network.lightmedseg.LightMedSeg` for why) -> + anchor position bias ->
concat with the routed skip -> 1x1x1 fusion conv, GroupNorm, SiLU -> SE -> adaptive three-path block -> SE.

The fusion's normalisation and activation are our reading of Eq. 16, whose operator was lost in
extraction: without them the stage would be almost linear (only the ghost branch is non-linear).

Per-axis schedule (:mod:`.schedule`): ``stride`` is the step this stage undoes (kernel = stride of the
transposed conv, e.g. ``(1, 2, 2)`` on thick-slice data: an axis with stride 1 is not upsampled) and
``kernel_size`` the kernel of the three-path block's depthwise and ghost branches at the stage's level.

Shapes: ``x (B, C_in, D, H, W)``, ``skip (B, skip_channels, D', H', W')`` with ``D' = stride_D * D`` when
upsampling (else ``D' = D``), anchors ``(B, N, 3)`` or None -> ``(B, C_out, D', H', W')``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .blocks.adaptive_paths import AdaptiveThreePath
from .checks import as_triple
from .convolutions import PatchExpandConv3d, PointwiseConv3d
from .blocks.position_bias import AnchorPositionBias
from .blocks.squeeze_excite import SqueezeExcite3D


class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, skip_channels: int, upsample: bool,
                 num_anchors: Optional[int], dense: bool = False, se_reduction: int = 3, stride=2,
                 kernel_size=3) -> None:
        super().__init__()
        stride = as_triple(stride, "DecoderStage", "stride")
        self.up = (PatchExpandConv3d(in_channels, out_channels, stride) if upsample
                   else PointwiseConv3d(in_channels, out_channels))
        self.pos = AnchorPositionBias(num_anchors, out_channels) if num_anchors else None
        self.fuse = nn.Sequential(PointwiseConv3d(out_channels + skip_channels, out_channels),
                                  nn.GroupNorm(4, out_channels), nn.SiLU())
        self.fuse_se = SqueezeExcite3D(out_channels, se_reduction)
        self.paths = AdaptiveThreePath(out_channels, dense=dense, kernel_size=kernel_size)
        self.se = SqueezeExcite3D(out_channels, se_reduction)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, anchors: Optional[torch.Tensor],
                return_weights: bool = False):
        u = self.up(x)
        if self.pos is not None:
            u = self.pos(u, anchors)
        # fuse = 1x1x1 conv of cat(u, skip), GroupNorm, SiLU; the conv without building the concatenation
        h = self.fuse_se(self.fuse[1:](self.fuse[0].forward_cat((u, skip))))
        h, w = self.paths(h, return_weights=True)
        h = self.se(h)
        return (h, w) if return_weights else h
