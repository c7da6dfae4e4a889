"""Squeeze-and-Excitation for 3D feature maps (LightMedSeg §3.4 Eq. 10 and §3.6; Hu et al., CVPR 2018).

``y = x * sigmoid(W2 SiLU(W1 GAP(x)))`` with a bottleneck of ``max(min_hidden, channels // reduction)``.
The floor of 4 keeps the narrow early stages (8 or 16 channels) from collapsing to one or two hidden units,
as the paper prescribes. The paper's reduction ratio was lost in extraction; LightMedSeg uses 3, the value
that together with the other modules reproduces its parameter totals (see docs/decisions.md#se-ratio).

Shapes: ``(B, C, D, H, W) -> (B, C, D, H, W)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_positive_ints
from ..elementwise import mean


class SqueezeExcite3D(nn.Module):
    def __init__(self, channels: int, reduction: int = 3, min_hidden: int = 4) -> None:
        super().__init__()
        check_positive_ints("SqueezeExcite3D", channels=channels, reduction=reduction)
        hidden = max(min_hidden, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = mean(x, (2, 3, 4))
        s = torch.sigmoid(self.fc2(self.act(self.fc1(s))))
        return x * s[:, :, None, None, None]
