"""Learned multi-scale skip router (LightMedSeg §3.5, Eqs. 11-13).

Decoder stages are numbered 0-3 from the bottleneck up (the paper's 1-4).

* **Routed stages (0 and 1, low resolution).** Every encoder output ``E_s`` (widths 16/32/64/128) is
  projected to 64 channels by a 1x1x1 conv and aligned to the stage's grid; the four aligned maps are
  concatenated (256 channels) and a two-layer 1x1x1 controller (256 -> 64, SiLU, -> 4) predicts per-voxel
  softmax weights over the four sources. The weighted sum (64 channels) is projected 1x1x1 to the stage width.
* **Direct stages (2 and 3, high resolution).** Concatenating four 64-channel maps at 64^3 is what the paper
  avoids: only the spatially matching map (encoder stage 1, then the stem output) is projected to the stage
  width.

Choices where the text is silent or garbled (see docs/decisions.md#skip-router):

* *One controller shared by both routed stages.* The paper's 24K budget cannot hold two 256->64->4
  controllers (16.7K each) next to the four projections (15.6K); sharing one is the closest reading. This
  module has 38.9K parameters with the per-stage output projections; the paper's figure is not reachable
  with the components it names.
* *Project on the coarser grid.* A 1x1x1 conv commutes exactly with trilinear/average resampling (both
  are linear and the resampling weights sum to one), so each ``E_s`` is projected on whichever of its own
  grid and the stage's grid is coarser: finer maps are downsampled first, coarser maps are projected
  first and then upsampled. Same result as the paper's order, a fraction of the MACs, and no 64-channel
  full-resolution intermediate.
* *Downsampling finer maps* (``E_1``/``E_2`` to the coarse stages), which the paper does not describe,
  uses average pooling by the exact power-of-two factor (anti-aliased; for factor 2 it equals trilinear
  resampling). Coarser maps are upsampled trilinearly, as in the paper.
* *Per-axis factors.* With the network's per-axis schedule (``strides``, see
  :mod:`nnunetv2_lightmedseg.network.schedule`) the factor between two encoder grids is, per axis, the
  product of the pooling strides between them (e.g. ``(1, 4, 4)`` from ``E_1`` to ``E_3`` when z is not
  pooled); an axis with factor 1 is not resampled. The default is the paper's 2 per axis per step.

``last_stage_upsampled=True`` (the network's ``full_resolution_decoder``, reading B) puts the last decoder
stage at the input grid: its skip is the stem output "trilinearly upsampled to the stage", projected 1x1x1 on
the stem's grid first (projection and trilinear interpolation commute exactly) and then upsampled by the
stem's per-axis stride (2 on every axis in the paper's schedule).

``routed=False`` gives the ablation "w/o skip router": plain U-Net skips from the same-resolution
encoder output (``E_3, E_2, E_1``, stem), whose widths already equal the decoder widths.

Shapes: ``skip(k, feats, stem)`` with ``feats[s] (B, widths[s], S / 2^s)`` (S = stage-1 grid; per axis the
product of the pooling strides in general) returns
``(B, decoder_widths[k], grid of stage k)``; with ``return_weights`` routed stages also return
``(B, 4, grid)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..schedule import DEFAULT_STRIDES, check_strides, cumulative_factors, downsample_avg, resample_between, \
    upsample_trilinear
from ..convolutions import PointwiseConv3d
from ..elementwise import addcmul


def resample_pow2(x: torch.Tensor, log2_factor: int) -> torch.Tensor:
    """Resample by ``2 ** log2_factor`` on every axis (positive: upsample trilinearly, negative: average-pool).
    The isotropic case of :func:`~nnunetv2_lightmedseg.network.schedule.resample_between`."""
    if log2_factor > 0:
        return upsample_trilinear(x, (2 ** log2_factor,) * 3)
    if log2_factor < 0:
        return downsample_avg(x, (2 ** (-log2_factor),) * 3)
    return x


class MultiScaleSkipRouter(nn.Module):
    def __init__(
        self,
        encoder_widths: Sequence[int] = (16, 32, 64, 128),
        stem_channels: int = 8,
        decoder_widths: Sequence[int] = (64, 32, 16, 8),
        routed_channels: int = 64,
        controller_hidden: int = 64,
        routed: bool = True,
        last_stage_upsampled: bool = False,
        strides: Sequence[Sequence[int]] = DEFAULT_STRIDES,
    ) -> None:
        super().__init__()
        if len(encoder_widths) != 4 or len(decoder_widths) != 4:
            raise ValueError(f"MultiScaleSkipRouter: LightMedSeg has four stages each way, got encoder widths "
                             f"{list(encoder_widths)} and decoder widths {list(decoder_widths)}")
        self.routed = routed
        self.last_stage_upsampled = last_stage_upsampled
        # decoder stage k works at the grid of encoder stage 2 - k (k = 0, 1, 2) and of the stem (k = 3)
        self.stage_level = (2, 1, 0, 0)
        #: the network's four steps (stem, three poolings) and each encoder grid's factor relative to E_1's
        self.strides = check_strides(strides)
        self.encoder_factors = cumulative_factors(self.strides[1:])
        if routed:
            self.proj = nn.ModuleList(PointwiseConv3d(c, routed_channels) for c in encoder_widths)
            self.controller = nn.Sequential(
                PointwiseConv3d(len(encoder_widths) * routed_channels, controller_hidden), nn.SiLU(),
                PointwiseConv3d(controller_hidden, len(encoder_widths)),
            )
            self.out = nn.ModuleList(PointwiseConv3d(routed_channels, decoder_widths[k]) for k in (0, 1))
            self.direct = nn.ModuleList([PointwiseConv3d(encoder_widths[0], decoder_widths[2]),
                                         PointwiseConv3d(stem_channels, decoder_widths[3])])
        else:
            plain = (encoder_widths[2], encoder_widths[1], encoder_widths[0], stem_channels)
            if tuple(plain) != tuple(decoder_widths):
                raise ValueError(f"MultiScaleSkipRouter: plain skips need encoder widths mirrored by the decoder, "
                                 f"got {plain} vs {tuple(decoder_widths)}")

    def skip(self, k: int, feats: Sequence[torch.Tensor], stem: torch.Tensor, return_weights: bool = False):
        if not self.routed or k >= 2:
            if not self.routed:
                y = (feats[2], feats[1], feats[0], stem)[k]
            else:
                y = self.direct[k - 2](feats[0] if k == 2 else stem)
            if k == 3 and self.last_stage_upsampled:
                y = upsample_trilinear(y, self.strides[0])  # the stem's grid -> the input grid, per axis
            return (y, None) if return_weights else y
        level = self.stage_level[k]
        aligned = []
        target = self.encoder_factors[level]
        for s, f in enumerate(feats):
            source = self.encoder_factors[s]
            if s <= level:  # finer (or same) grid: downsample first, then project
                aligned.append(self.proj[s](resample_between(f, source, target)))
            else:  # coarser grid: project where it is cheap, then upsample
                aligned.append(resample_between(self.proj[s](f), source, target))
        # controller = 1x1x1 conv of cat(aligned), SiLU, 1x1x1 conv; the first without building the concatenation
        w = torch.softmax(self.controller[1:](self.controller[0].forward_cat(aligned)), dim=1)
        ws = w.split(1, dim=1)  # not slices: the backward of split (a cat) keeps the gradient channels-last
        fused = ws[0] * aligned[0]
        for s in range(1, len(aligned)):
            fused = addcmul(fused, ws[s], aligned[s])  # fused + w_s * aligned_s, one op
        y = self.out[k](fused)
        return (y, w) if return_weights else y
