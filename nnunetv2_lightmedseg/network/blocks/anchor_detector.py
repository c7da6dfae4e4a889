"""Global anchor detector (LightMedSeg §3.2, Eq. 1).

Distils the raw input volume into ``N`` sample-specific spatial anchors, each a normalised (d, h, w)
coordinate in [0, 1]: three ``Conv3d(k3, s2, p1) -> GroupNorm(4) -> SiLU`` layers (8 channels each),
global average pooling, and a two-layer MLP (hidden 128, SiLU) whose ``3N`` logits pass a sigmoid.
No spatial supervision: the anchors are whatever helps the FiLM conditioning and the decoder's position
bias downstream. With 4 input modalities and N = 8 this is exactly the paper's 8.6K parameters (8,640).

Shapes: ``(B, C_in, D, H, W) -> (B, N, 3)`` with values in (0, 1), axis order (depth, height, width).
"""
from __future__ import annotations

import torch
from torch import nn


class GlobalAnchorDetector(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int = 8, width: int = 8, hidden: int = 128,
                 num_layers: int = 3) -> None:
        super().__init__()
        assert in_channels > 0, f"in_channels must be positive, got {in_channels}"
        assert num_anchors > 0, f"num_anchors must be positive, got {num_anchors}"
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_layers):
            layers += [nn.Conv3d(c, width, 3, 2, 1), nn.GroupNorm(4, width), nn.SiLU(inplace=True)]
            c = width
        self.features = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(inplace=True), nn.Linear(hidden, 3 * num_anchors))
        self.num_anchors = num_anchors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.features(x).mean(dim=(2, 3, 4))
        return torch.sigmoid(self.mlp(g)).view(x.shape[0], self.num_anchors, 3)
