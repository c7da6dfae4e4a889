"""Global anchor detector (LightMedSeg §3.2, Eq. 1).

Distils the raw input volume into ``N`` sample-specific spatial anchors, each a normalised (d, h, w)
coordinate in [0, 1]: three ``Conv3d(k3, s2, p1) -> GroupNorm(4) -> SiLU`` layers (8 channels each),
global average pooling, and a two-layer MLP (hidden 128, SiLU) whose ``3N`` logits pass a sigmoid.
No spatial supervision: the anchors are whatever helps the FiLM conditioning and the decoder's position
bias downstream. With 4 input modalities and N = 8 this is exactly the paper's 8.6K parameters (8,640).

Anisotropic schedules (:mod:`nnunetv2_lightmedseg.network.schedule`): layer ``i`` is strided like the
network's step ``i`` (the stem, then the first two poolings) and uses that level's kernel, e.g. ``(1, 3, 3)``
kernels and ``(1, 2, 2)`` strides on thick-slice data, so the detector's receptive field grows in the same
physical proportions as the encoder's. Defaults (``stride=2``, ``kernel=3`` on every axis) are the paper's.
Each anchor coordinate is normalised per axis (0 = first voxel edge, 1 = last, of the padded input), so a
10-slice axis and a 256-voxel axis both span [0, 1].

Shapes: ``(B, C_in, D, H, W) -> (B, N, 3)`` with values in (0, 1), axis order (depth, height, width).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..checks import as_triple, check_positive_ints
from ..convolutions import Conv3d


class GlobalAnchorDetector(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int = 8, width: int = 8, hidden: int = 128,
                 num_layers: int = 3, strides: Optional[Sequence[Sequence[int]]] = None,
                 kernel_sizes: Optional[Sequence[Sequence[int]]] = None) -> None:
        super().__init__()
        check_positive_ints("GlobalAnchorDetector", in_channels=in_channels, num_anchors=num_anchors)
        strides = [2] * num_layers if strides is None else [tuple(int(v) for v in s) for s in strides]
        kernel_sizes = [as_triple(3 if kernel_sizes is None else k, "GlobalAnchorDetector", "kernel_sizes")
                        for k in (kernel_sizes if kernel_sizes is not None else [3] * num_layers)]
        if len(strides) != num_layers or len(kernel_sizes) != num_layers:
            raise ValueError(f"GlobalAnchorDetector: need one stride and one kernel per layer ({num_layers}), got "
                             f"strides {strides} and kernels {kernel_sizes}")
        layers: list[nn.Module] = []
        c = in_channels
        for s, k in zip(strides, kernel_sizes):
            pad = tuple(v // 2 for v in k)
            layers += [Conv3d(c, width, k, s, pad), nn.GroupNorm(4, width), nn.SiLU()]
            c = width
        self.features = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 3 * num_anchors))
        self.num_anchors = num_anchors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.features(x).mean(dim=(2, 3, 4))
        return torch.sigmoid(self.mlp(g)).view(x.shape[0], self.num_anchors, 3)
