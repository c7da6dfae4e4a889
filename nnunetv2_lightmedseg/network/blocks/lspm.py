"""Local Structural Prior Module, LSPM (LightMedSeg §3.3, Eqs. 2-5).

Operates on the stem output ``F0`` (8 channels, half resolution) and emits two signals:

* **Texture map** ``T`` (branch 1): ``R = mean_c |F0 - S(F0)|`` where ``S`` is a depthwise 3x3x3 smoothing
  convolution initialised as a box filter (and learned). ``T = R / (max R + eps)`` per sample, so ``T`` lies
  in [0, 1] and can gate the encoder's two paths directly. The paper's normalisation was lost in extraction;
  per-sample max scaling keeps the gate's range fixed whatever the image contrast (see
  docs/decisions.md#texture-map-normalisation). ``T`` has one channel and
  is handed unchanged to all four encoder stages.
  ``texture_norm="median"`` is the outlier-robust alternative: ``T = R / (R + median R + eps)`` per sample. It
  also lies in [0, 1), is 0.5 where the texture equals the sample's median texture, and no single voxel can
  move the median (with ``"max"`` one hot voxel rescales the whole map, and most voxels of a real MRI end up
  below 0.1, so the encoder's two paths are blended almost constantly; see ``lightmedseg explain``). The mean
  would not do: one voxel 10^4 above the rest moved a mean-normalised map by 0.23 (median over voxels).
* **Adapted features** ``F_mix`` (branches 2 and 3): a spatial gating head (``Conv3d k3 C->hidden``, GN, SiLU,
  ``Conv3d k3 hidden->1``, sigmoid) scores per-voxel complexity ``g``; a 1x1x1 conv turns ``g`` into softmax
  weights over two 1x1x1 expert projections ``C -> out_channels`` that are blended voxel by voxel.

Parameter budget: the paper states 11.7K but its head width was lost in extraction. LightMedSeg uses
``hidden=24`` (6.4K parameters in this module): the gating head is the most expensive operation at the
stem's grid, and 24 is what keeps the whole network at the paper's 14.64 GFLOPs (see
docs/decisions.md#lspm-gating-width). The 5K difference is 1% of the model.

``kernel_size`` (an int or one value per axis) is the kernel of the smoothing conv and of the gating head's two
convs: the stem grid's kernel of the network's resolution schedule, ``(1, 3, 3)`` on thick-slice data so that
"texture" is measured within slices rather than across slices 5-10 mm apart (the box-filter initialisation is
then ``1 / 9``). Default 3 (the paper's 3x3x3).

Shapes: ``F0 (B, C, D, H, W)`` -> ``(F_mix (B, out_channels, D, H, W), T (B, 1, D, H, W))``; with
``return_gate=True`` also the gate ``g (B, 1, D, H, W)`` and expert weights ``(B, 2, D, H, W)``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import as_triple
from ..convolutions import Conv3d, PointwiseConv3d
from ..elementwise import mean, mix_halves

#: texture-map normalisations: per-sample max (default) or the outlier-robust ratio to the per-sample median
TEXTURE_NORMS = ("max", "median")


class LocalStructuralPrior(nn.Module):
    def __init__(self, channels: int = 8, out_channels: int = 16, hidden: int = 24, norm_groups: int = 4,
                 eps: float = 1e-6, texture_norm: str = "max", kernel_size=3) -> None:
        super().__init__()
        if not (channels > 0 and out_channels > 0 and hidden > 0):
            raise ValueError(f"LSPM needs positive widths, got channels={channels}, out={out_channels}, "
                             f"hidden={hidden}")
        if texture_norm not in TEXTURE_NORMS:
            raise ValueError(f"LSPM: texture_norm must be one of {TEXTURE_NORMS}, got {texture_norm!r}")
        self.texture_norm = texture_norm
        k = as_triple(kernel_size, "LSPM", "kernel_size")
        pad = tuple(v // 2 for v in k)
        self.smooth = Conv3d(channels, channels, k, 1, pad, groups=channels, bias=False)
        # start as a box filter (1/27 for 3x3x3): R is then a true high-pass
        nn.init.constant_(self.smooth.weight, 1.0 / self.smooth.weight[0, 0].numel())
        self.gate = nn.Sequential(
            Conv3d(channels, hidden, k, 1, pad), nn.GroupNorm(norm_groups, hidden), nn.SiLU(),
            Conv3d(hidden, 1, k, 1, pad),
        )
        self.to_expert_weights = PointwiseConv3d(1, 2)
        # the two experts as one 1x1x1 conv with 2*out channels: one read of F0 instead of two
        self.experts = PointwiseConv3d(channels, 2 * out_channels)
        self.out_channels = out_channels
        self.eps = eps

    def texture_map(self, f0: torch.Tensor) -> torch.Tensor:
        r = mean((f0 - self.smooth(f0)).abs(), (1,), keepdim=True)
        if self.texture_norm == "median":
            typical = r.flatten(2).median(dim=2).values[..., None, None, None]
            return r / (r + typical + self.eps)
        return r / (r.amax(dim=(2, 3, 4), keepdim=True) + self.eps)

    def forward(self, f0: torch.Tensor, return_gate: bool = False):
        t = self.texture_map(f0)
        g = torch.sigmoid(self.gate(f0))
        # expert weights softmax(conv1x1(g)) over two logits l = a g + b: softmax(l)_0 = sigmoid(l_0 - l_1)
        # = sigmoid((a_0 - a_1) g + (b_0 - b_1)), one op on the one-channel gate instead of a 1 -> 2 conv, a
        # softmax and a split over (B, 2, ...) (3 ms of forward and backward per hippocampus step); the conv's
        # parameters stay, so checkpoints load unchanged. torch.utils.flop_counter counts convolutions, not
        # elementwise ops, so the network's counted FLOPs at 1x4x128^3 dropped by this conv's 1.05 MFLOPs
        # (15,548,072,128 -> 15,547,023,552; the arithmetic is the same)
        a = self.to_expert_weights.weight.view(2)
        b = self.to_expert_weights.bias
        w0 = torch.sigmoid(torch.addcmul(b[0] - b[1], g, a[0] - a[1]))
        e = self.experts(f0)
        # w0 * e0 + w1 * e1 with w1 = 1 - w0, as one op (lerp: e1 + w0 * (e0 - e1)) over the experts' two channel
        # halves; lerp needs one dtype (autocast)
        mixed = mix_halves(e, w0.to(e.dtype))
        if return_gate:
            return mixed, t, g, torch.cat((w0, 1 - w0), dim=1)
        return mixed, t
