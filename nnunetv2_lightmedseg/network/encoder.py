"""Encoder stage of LightMedSeg (§3.4): GhostConv3D -> anchor FiLM -> texture-routed two paths -> SE.

Shapes: ``x (B, C_in, D, H, W)``, texture ``t (B, 1, D, H, W)`` (or a float when LSPM is ablated),
anchors ``(B, N, 3)`` (or None when anchors are ablated) -> ``(B, C_out, D, H, W)``. Downsampling
(MaxPool after stages 1-3) is done by the network, after the output is stored as a skip. ``kernel_size`` (int or
per axis) is the kernel of the stage's ghost and depthwise convs (the resolution schedule's, see
:mod:`.schedule`).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .blocks.film import AnchorFiLM
from .blocks.ghost_conv import GhostConv3D
from .blocks.squeeze_excite import SqueezeExcite3D
from .blocks.texture_routing import TextureRoutedBlock


class EncoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_anchors: Optional[int], dense: bool = False,
                 se_reduction: int = 3, kernel_size=3) -> None:
        super().__init__()
        self.conv = GhostConv3D(in_channels, out_channels, kernel_size, 1, activation=True, dense=dense)
        self.film = AnchorFiLM(num_anchors, out_channels) if num_anchors else None
        self.route = TextureRoutedBlock(out_channels, kernel_size)
        self.se = SqueezeExcite3D(out_channels, se_reduction)

    def forward(self, x: torch.Tensor, t: Union[torch.Tensor, float], anchors: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.conv(x)
        if self.film is not None:
            h = self.film(h, anchors)
        return self.se(self.route(h, t))
