"""Output layers of LightMedSeg: the segmentation head (§3.6) and optional deep-supervision heads.

Both keep their class-dependent convolutions under a ``seg_layers`` attribute, as nnU-Net's own networks do
(``decoder.seg_layers``): nnU-Net's ``-pretrained_weights`` loader skips every state-dict key that contains
``.seg_layers.``, so a model pretrained on one label set can be fine-tuned on another
(``nnUNetv2_train ... -pretrained_weights CKPT``).

* :class:`SegmentationHead` — the paper's head: a 1x1x1 convolution to the classes, followed (reading A of the
  resolution schedule, see :class:`~nnunetv2_lightmedseg.network.lightmedseg.LightMedSeg`) by a stride-2
  transposed convolution that restores the input grid: kernel 2 x stride, trilinear start (``upsampling=
  "overlap"``, the default, :class:`~..convolutions.OverlapExpandConv3d`) or kernel = stride (``"blocks"``,
  :class:`~..convolutions.PatchExpandConv3d`); see docs/decisions.md#head-upsampling. Keys
  ``head.seg_layers.0.*`` (1x1x1) and ``head.seg_layers.1.*`` (transposed conv, only when ``upsample``).
  Shapes: ``(B, C, D, H, W) -> (B, classes, 2D, 2H, 2W)`` (``upsample``; ``stride`` per axis in general) or ``(B, classes, D, H, W)``.
  With ``out_size`` (the network's unpadded input size) the output is cropped to it, and with ``upsample`` the
  crop is taken *before* the transposed convolution, at the input voxels the kept output voxels read
  (``input_extent``: ``ceil(out_size / stride)`` for kernel = stride, one more for the overlapping kernel), so
  the cropped logits are the same numbers. The
  network pads its input to a multiple of 16 per axis (48 x 64 x 48 for the hippocampus patch of
  40 x 56 x 40, 1.65x the voxels); upsampling only the voxels that are kept, in the default layout the loss
  and the predictor read, saves the full-size crop copy and its backward pass.
* :class:`DeepSupervisionHeads` — not in the paper: one 1x1x1 convolution to the classes per supervised
  decoder stage, used only by the deep-supervision variant. Keys ``aux_heads.seg_layers.<i>.*``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from ..checks import as_triple
from ..convolutions import OverlapExpandConv3d, PatchExpandConv3d, PointwiseConv3d
from ..layout import to_channels_last


HEAD_UPSAMPLING = ("blocks", "overlap")


class SegmentationHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, upsample: bool, stride=2,
                 upsampling: str = "overlap") -> None:
        super().__init__()
        if in_channels <= 0 or num_classes <= 0:
            raise ValueError(f"SegmentationHead: in_channels and num_classes must be positive, got "
                             f"{in_channels}, {num_classes}")
        if upsampling not in HEAD_UPSAMPLING:
            raise ValueError(f"SegmentationHead: upsampling must be one of {HEAD_UPSAMPLING}, got {upsampling!r}")
        layers: List[nn.Module] = [PointwiseConv3d(in_channels, num_classes)]
        if upsample:
            # stride = the stem's (per axis: (1, 2, 2) on thick-slice plans, see network/schedule.py)
            stride = as_triple(stride, "SegmentationHead", "stride")
            if upsampling == "overlap":  # kernel 2 x stride, initialised as trilinear interpolation
                layers.append(OverlapExpandConv3d(num_classes, num_classes, stride))
            else:  # kernel = stride; the logits leave the network in the default layout: shuffle straight into it
                layers.append(PatchExpandConv3d(num_classes, num_classes, stride, channels_last_output=False))
        self.seg_layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, out_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        x = self.seg_layers[0](x)
        if len(self.seg_layers) > 1:
            up = self.seg_layers[1]
            if out_size is not None:  # the input voxels that the kept output voxels read, per axis
                keep = [min(up.input_extent(n, a), x.shape[2 + a]) for a, n in enumerate(out_size)]
                if keep != list(x.shape[2:]):
                    x = to_channels_last(x[:, :, :keep[0], :keep[1], :keep[2]])  # a small copy (classes wide)
            return up(x, out_size)  # both upsamplings crop to out_size (the overlapping one as it shuffles)
        if out_size is not None and list(x.shape[2:]) != [int(n) for n in out_size]:
            x = x[:, :, :out_size[0], :out_size[1], :out_size[2]]
        return x


class DeepSupervisionHeads(nn.Module):
    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if not in_channels or any(c <= 0 for c in in_channels) or num_classes <= 0:
            raise ValueError(f"DeepSupervisionHeads: need positive widths and classes, got {list(in_channels)}, "
                             f"{num_classes}")
        self.seg_layers = nn.ModuleList(PointwiseConv3d(c, num_classes) for c in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [head(f) for head, f in zip(self.seg_layers, feats)]


# keys of checkpoints written before the output layers moved under ``seg_layers`` -> their new names
LEGACY_HEAD_KEYS = {"head.weight": "head.seg_layers.0.weight", "head.bias": "head.seg_layers.0.bias",
                    "head_up.weight": "head.seg_layers.1.weight", "head_up.bias": "head.seg_layers.1.bias"}


def rename_legacy_head_keys(state_dict: dict, prefix: str = "") -> None:
    """In place: rename pre-``seg_layers`` head keys (``head.weight``, ``head_up.*``) to their new names."""
    for old, new in LEGACY_HEAD_KEYS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


def embed_block_kernel(weight: torch.Tensor, up: OverlapExpandConv3d) -> torch.Tensor:
    """A kernel = stride transposed-conv weight ``(C_in, C_out, *stride)`` (the ``"blocks"`` head) as the
    overlapping layer ``up``'s weight with the same output: with kernel ``2 s`` and padding ``s / 2``, tap
    ``k + s / 2`` lands where tap ``k`` of the block kernel did, so the block kernel sits in the middle and the
    other taps are zero."""
    out = weight.new_zeros(weight.shape[:2] + tuple(up.kernel_size))
    out[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(up.padding, up.stride))] = weight
    return out
