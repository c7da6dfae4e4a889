"""Anchor-conditioned FiLM (LightMedSeg §3.4, Eq. 6; Perez et al., AAAI 2018).

The ``N x 3`` anchors are flattened to a ``3N`` vector and mapped by two independent linear layers to a
per-channel scale and shift. We apply ``x * (1 + gamma) + beta`` rather than ``x * gamma + beta``: the
paper's formula was lost in extraction, and the residual form starts as the identity, which keeps a
freshly initialised network trainable (the common FiLM practice; see docs/decisions.md#film-form).

Shapes: ``x (B, C, D, H, W)``, ``anchors (B, N, 3)`` -> ``(B, C, D, H, W)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_positive_ints
from ..elementwise import addcmul


class AnchorFiLM(nn.Module):
    def __init__(self, num_anchors: int, channels: int) -> None:
        super().__init__()
        check_positive_ints("AnchorFiLM", num_anchors=num_anchors, channels=channels)
        self.to_scale = nn.Linear(3 * num_anchors, channels)
        self.to_shift = nn.Linear(3 * num_anchors, channels)

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        a = anchors.flatten(1)
        gamma = self.to_scale(a)[:, :, None, None, None]
        beta = self.to_shift(a)[:, :, None, None, None]
        return addcmul(beta, x, 1 + gamma)  # x * (1 + gamma) + beta in one full-size op
