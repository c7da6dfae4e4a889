"""LightMedSeg: lightweight 3D segmentation with learned spatial anchors (the whole network).

Paper: "LightMedSeg: Lightweight 3D Medical Image Segmentation with Learned Spatial Anchors"
(``shared/paper/LightMedSeg.txt``). Module map (paper section -> module):

==========================================  ==============================================
§3.1 GhostConv3D patch-embedding stem       :mod:`.blocks.ghost_conv`
§3.2 Global anchor detector                 :mod:`.blocks.anchor_detector`
§3.3 LSPM (texture map, gate, mixer)        :mod:`.blocks.lspm`
§3.4 Encoder: FiLM, texture routing, SE     :mod:`.encoder`, :mod:`.blocks.film`,
                                            :mod:`.blocks.texture_routing`, :mod:`.blocks.squeeze_excite`
§3.5 Multi-scale skip router                :mod:`.blocks.skip_router`
§3.6 Decoder: position bias, three paths    :mod:`.decoder`, :mod:`.blocks.position_bias`,
                                            :mod:`.blocks.adaptive_paths`
==========================================  ==============================================

Resolution schedule (input ``S``): stem ``S/2`` -> encoder stages at ``S/2, S/4, S/8, S/16`` (MaxPool after
stages 1-3; stage 4 is the bottleneck) -> decoder stages at ``S/8, S/4, S/2, S/2`` -> head (1x1x1 conv to the
classes, stride-2 transposed conv) at ``S``. The paper states both that four transposed-conv stages undo
the stem's reduction and that the head's transposed conv restores the input resolution; both cannot hold
from ``S/16``. We follow the skip description (decoder stage 4 consumes the stem output at ``S/2``) and the
head description: the last decoder stage does not upsample (a 1x1x1 conv changes its width instead).
This reading also matches the paper's cost: 7.77 GMACs = 15.55 GFLOPs at 1x4x128^3 (paper: 14.64 GFLOPs),
counting FLOPs = 2 x MACs as ``torch.utils.flop_counter`` does; 470,667 parameters (paper: 0.48M). See
docs/decisions.md#resolution-reading and docs/decisions.md#flop-convention.

The head's transposed convolution (the paper: "a transposed convolution with stride 2"; its kernel was lost) has
kernel 4 (2 x the stem's stride per axis), padding 1, and starts as trilinear interpolation of the 1x1x1 logits
(``head_upsampling="overlap"``, :class:`~.convolutions.OverlapExpandConv3d`): structures a few voxels thick need
interpolated logits, which 2x2x2 blocks of kernel 2 (= stride, ``head_upsampling="blocks"``, the earlier default)
cannot give; see docs/decisions.md#head-upsampling. Block-head checkpoints load into this head with the same
outputs (their kernel embedded); ``nnUNetTrainer_LightMedSeg_BlockHead`` trains the block head.

Reading B is available as an option, ``full_resolution_decoder=True``: the last decoder stage upsamples to
the input grid with a stride-2 transposed conv (the stem's per-axis stride, see below), its skip is the stem output trilinearly upsampled (projected
1x1x1 on the stem's grid first, which commutes exactly), and the head is the 1x1x1 conv alone. It costs
**10.38 GMACs = 20.75 GFLOPs** at 1x4x128^3 (1.38x reading A: the last stage's fusion, SE and three paths run
on 8x as many voxels) and 470,535 parameters for ``LightMedSeg(4, 4)`` (the last stage's k2 transposed conv
replaces its 1x1x1 conv and the head's transposed conv).

Deep supervision (not in the paper) is an option, ``deep_supervision=True``: 1x1x1 heads on decoder stages 2
and 3 (``aux_heads.seg_layers``), whose outputs at 1/4 and 1/2 of the input grid follow the full-resolution
logits in a list, as nnU-Net's networks return them, while ``deep_supervision`` (the attribute) is True. The
trainer switches it off for validation and prediction (nnU-Net's ``set_deep_supervision_enabled``), so the
predictor gets one tensor and the checkpoint loads strictly either way.

The output layers live under ``head.seg_layers`` (and ``aux_heads.seg_layers``) so that nnU-Net's
``-pretrained_weights`` skips them when fine-tuning on another label set; checkpoints written before that
rename (``head.*``, ``head_up.*``) are converted when loaded.

Per-axis schedule from nnU-Net's plans (``strides``, ``kernel_sizes``). The paper halves every axis at every
step, which suits its isotropic 128^3 crops but not thick-slice data (cine-MRI, prostate, many CT series:
5-10 mm between slices, 1-1.5 mm in-plane), where nnU-Net plans in-plane poolings and ``[1, 3, 3]`` kernels
until the spacing is about isotropic. ``strides`` gives each of the four steps (stem, three poolings) one
stride per axis, ``kernel_sizes`` the kernel of every 3x3x3 convolution per resolution level, and every part
that resamples follows them (anchor-detector convs, texture-map pooling, max-poolings, skip router,
decoder and head transposed convs, the full-resolution decoder stage and the deep-supervision scales);
coordinates (anchors, position bias) are normalised per axis. ``nnUNetTrainer_LightMedSeg`` derives both
from the configuration's plans. **The rule**: the four steps are nnU-Net's first four non-trivial stage
strides, in order (an axis nnU-Net does not pool there gets stride 1); fewer than four planned steps are
completed by repeating the last one (isotropic plans: ``[2, 2, 2]``); each level takes the kernel of the
nnU-Net stage at its resolution. ACDC-like plans ``[[1,1,1],[1,2,2],[1,2,2],[2,2,2],[1,2,2],[1,2,2]]`` give
strides ``[1,2,2],[1,2,2],[2,2,2],[1,2,2]`` (divisor 2 x 16 x 16, so a 10-slice patch is used as is) and
in-plane kernels on the input and stem grids. Isotropic plans (hippocampus, BraTS, the 128^3 override) give
exactly the paper's network: same parameters, FLOPs, state-dict keys and shapes, and bit-identical outputs.
The rule and the resampling helpers are in :mod:`.schedule`; see docs/decisions.md#resolution-schedule.

Arbitrary input sizes: inputs are zero-padded to a multiple of the divisor on every axis (per axis, the
product of that axis's four strides: 16 for the paper's schedule) and the logits are cropped back, so the
output always has the input's spatial size. Each axis must be at least its divisor.

On CPU the network runs in ``torch.channels_last_3d`` memory format (PyTorch's oneDNN 3D convolutions are
~2x faster in it, their backward passes ~3x): the input is converted on entry and every block keeps that layout,
also after a one-channel image and after the ops that would drop it (:mod:`.layout`); the output is returned in
the default format. Every convolution calls oneDNN directly (PyTorch would send batch-1 small-grid convolutions
to a slow fallback), and the upsampling transposed convolutions run as one matrix product at inference
(:mod:`.convolutions`; same parameters, keys and mathematics). The conversion is left out while the legacy ONNX exporter traces the network (ONNX has no memory
layouts); the checks are constants for torch.compile and torch.export, which keep it, as does ``torch.jit.trace``.

Shapes: ``(B, input_channels, D, H, W) -> (B, num_classes, D, H, W)``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .blocks.anchor_detector import GlobalAnchorDetector
from .checks import check_positive_ints
from .blocks.ghost_conv import GhostConv3D
from .blocks.lspm import TEXTURE_NORMS, LocalStructuralPrior
from .convolutions import OverlapExpandConv3d, PointwiseConv3d
from .blocks.seg_head import (HEAD_UPSAMPLING, DeepSupervisionHeads, SegmentationHead, embed_block_kernel,
                              rename_legacy_head_keys)
from .blocks.skip_router import MultiScaleSkipRouter
from .decoder import DecoderStage
from .encoder import EncoderStage
from .layout import to_channels_last
from .schedule import (check_kernel_sizes, check_strides, cumulative_factors, divisor as schedule_divisor,
                       downsample_avg, minimum_size_message)

CONV_TYPES = ("ghost", "standard")


class LightMedSeg(nn.Module):
    """The LightMedSeg network.

    Args:
        input_channels: number of image modalities (e.g. 4 for BraTS, 1 for ACDC or hippocampus MRI).
        num_classes: number of output channels (nnU-Net: labels incl. background, or regions).
        conv_type: ``"ghost"`` (paper default, 0.48M) or ``"standard"`` (every GhostConv3D replaced by a
            dense Conv3D: the paper's "Standard Conv" / "w/o GhostConv3D", 0.66M).
        num_anchors: anchors predicted by the global anchor detector (paper: 8 default, also larger).
        use_lspm: ablation "w/o LSPM" when False: the stem output feeds the encoder directly and both
            encoder paths are blended 50/50 (no texture map exists to route them).
        use_anchors: ablation "w/o anchors" when False: no anchor detector, no FiLM, no position bias.
        use_skip_router: ablation "w/o skip router" when False: plain same-resolution U-Net skips.
        encoder_widths: channel widths of the four encoder stages (paper: 16-32-64-128); the decoder
            mirrors them (64-32-16-8).
        stem_channels: stem output width (paper: 8, whatever the number of modalities).
        router_channels: common width of the skip router's projections (paper: 64).
        se_reduction: SE bottleneck ratio; the bottleneck is ``max(4, C // se_reduction)``.
        lspm_hidden: width of the LSPM gating head (its "expand" convolution).
        texture_norm: normalisation of the LSPM texture map, ``"max"`` (per-sample max) or ``"median"``
            (``R / (R + median R)``, robust to outlier voxels); see :mod:`.blocks.lspm`.
        full_resolution_decoder: reading B of the resolution schedule (last decoder stage at the input grid,
            head without upsampling); False = reading A (see the module docstring).
        head_upsampling: the kernel of the head's stride-2 transposed convolution (reading A; the paper gives
            none): ``"overlap"`` (default: kernel 2 x stride, initialised as trilinear interpolation; see
            :class:`~nnunetv2_lightmedseg.network.convolutions.OverlapExpandConv3d`) or ``"blocks"`` (kernel =
            stride: every half-resolution voxel writes its own 2x2x2 block; the earlier default). Without
            effect with ``full_resolution_decoder=True``, whose head does not upsample.
        deep_supervision: add auxiliary 1x1x1 heads on decoder stages 2 and 3 and return
            ``[logits, logits/2, logits/4]`` while the ``deep_supervision`` attribute is True (not in the paper).
        strides: the four downsampling steps (stem, then the three max-poolings), one stride per axis
            ``(D, H, W)`` each, e.g. ``[[1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]]`` for thick slices. None
            (default) = the paper's ``[2, 2, 2]`` x 4. Stored in ``config`` as int triples.
        kernel_sizes: kernel of the 3x3x3 convolutions on each resolution level 0-4 (input grid, stem grid,
            then after each pooling), one odd size per axis, e.g. ``[1, 3, 3]`` where nnU-Net's plans keep
            convolutions in-plane. None (default) = 3x3x3 everywhere. Level 0 is used only by the
            full-resolution decoder stage (``full_resolution_decoder=True``); the list mirrors nnU-Net's
            one-kernel-per-stage plans.

    Budget. The paper's SE ratio and gating-head width were lost in extraction. We fix them with the
    three figures the paper does give: ``se_reduction=3`` and ``lspm_hidden=24`` put the default at 470.7K
    parameters (paper 0.48M, -1.9%), the Standard-Conv variant at 688.2K (paper 0.66M, +4.3%) and the cost at
    15.55 GFLOPs (paper 14.64, +6.2%); with the block head they chose them for, 469.8K / 687.3K / 15.08 GFLOPs.
    SE parameters cost no FLOPs (they act on pooled vectors), the gating head is the most expensive op at the
    stem's grid: raising one and narrowing the other is the only way to meet all three. (With the common ratio
    4 and a 32-wide head: 466.7K / 684.3K / 16.10 GFLOPs with the block head.)
    """

    #: per-axis pad/crop divisor of the paper's schedule (stem x2, three max-pools x8); instances hold their own
    divisor: Tuple[int, int, int] = (16, 16, 16)

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        conv_type: str = "ghost",
        num_anchors: int = 8,
        use_lspm: bool = True,
        use_anchors: bool = True,
        use_skip_router: bool = True,
        encoder_widths: Sequence[int] = (16, 32, 64, 128),
        stem_channels: int = 8,
        router_channels: int = 64,
        se_reduction: int = 3,
        lspm_hidden: int = 24,
        texture_norm: str = "max",
        full_resolution_decoder: bool = False,
        head_upsampling: str = "overlap",
        deep_supervision: bool = False,
        strides: Optional[Sequence[Sequence[int]]] = None,
        kernel_sizes: Optional[Sequence[Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        check_positive_ints("LightMedSeg", input_channels=input_channels, num_classes=num_classes,
                            num_anchors=num_anchors, stem_channels=stem_channels, router_channels=router_channels,
                            se_reduction=se_reduction, lspm_hidden=lspm_hidden)
        if conv_type not in CONV_TYPES:
            raise ValueError(f"LightMedSeg: conv_type must be one of {CONV_TYPES}, got {conv_type!r}")
        encoder_widths = tuple(int(w) for w in encoder_widths)
        if len(encoder_widths) != 4 or any(w <= 0 or w % 8 for w in encoder_widths):
            raise ValueError("LightMedSeg: encoder_widths must be four positive multiples of 8 "
                             f"(GhostConv3D halves them, GroupNorm uses 4 groups), got {encoder_widths}")
        if head_upsampling not in HEAD_UPSAMPLING:
            raise ValueError(f"LightMedSeg: head_upsampling must be one of {HEAD_UPSAMPLING}, got {head_upsampling!r}")
        if texture_norm not in TEXTURE_NORMS:
            raise ValueError(f"LightMedSeg: texture_norm must be one of {TEXTURE_NORMS}, got {texture_norm!r}")
        for name, value in (("use_lspm", use_lspm), ("use_anchors", use_anchors),
                            ("use_skip_router", use_skip_router), ("full_resolution_decoder", full_resolution_decoder),
                            ("deep_supervision", deep_supervision)):
            if not isinstance(value, bool):
                raise TypeError(f"LightMedSeg: {name} must be True or False, got {value!r}")
        if stem_channels % 8:
            raise ValueError(f"LightMedSeg: stem_channels must be a multiple of 8, got {stem_channels}")
        strides = check_strides(strides)
        kernel_sizes = check_kernel_sizes(kernel_sizes)
        dense = conv_type == "standard"
        self.strides, self.kernel_sizes = strides, kernel_sizes
        self.divisor = schedule_divisor(strides)
        self.input_channels = input_channels
        self.num_classes = num_classes
        self.config = dict(conv_type=conv_type, num_anchors=num_anchors, use_lspm=use_lspm,
                           use_anchors=use_anchors, use_skip_router=use_skip_router,
                           encoder_widths=encoder_widths, stem_channels=stem_channels,
                           router_channels=router_channels, se_reduction=se_reduction, lspm_hidden=lspm_hidden,
                           texture_norm=texture_norm, full_resolution_decoder=full_resolution_decoder,
                           head_upsampling=head_upsampling, deep_supervision=deep_supervision, strides=strides, kernel_sizes=kernel_sizes)
        decoder_widths = (encoder_widths[2], encoder_widths[1], encoder_widths[0], stem_channels)
        n_anch = num_anchors if use_anchors else None

        # §3.1 stem: stride-2 GhostConv3D, GroupNorm(4), no activation (the paper names none)
        # (per-axis strides / kernels: step i leads into level i + 1, kernel_sizes[L] is level L's; see .schedule)
        self.stem = GhostConv3D(input_channels, stem_channels, kernel_sizes[1], strides[0], activation=False,
                                dense=dense)
        # §3.2 anchors from the raw input (its three strided layers follow the first three steps)
        self.anchor_detector = (GlobalAnchorDetector(input_channels, num_anchors, strides=strides[:3],
                                                     kernel_sizes=kernel_sizes[1:4]) if use_anchors else None)
        # §3.3 LSPM: texture map + adapted features (2x the stem width, the encoder's stage-1 input)
        self.lspm = LocalStructuralPrior(stem_channels, 2 * stem_channels, hidden=lspm_hidden,
                                         texture_norm=texture_norm, kernel_size=kernel_sizes[1]) if use_lspm else None
        enc_in = 2 * stem_channels if use_lspm else stem_channels
        # §3.4 encoder: stage i at level i + 1
        self.encoder = nn.ModuleList()
        for i, w in enumerate(encoder_widths):
            self.encoder.append(EncoderStage(enc_in, w, n_anch, dense, se_reduction, kernel_size=kernel_sizes[i + 1]))
            enc_in = w
        # §3.5 skip router
        self.skip_router = MultiScaleSkipRouter(encoder_widths, stem_channels, decoder_widths, router_channels,
                                                routed=use_skip_router,
                                                last_stage_upsampled=full_resolution_decoder, strides=strides)
        # §3.6 decoder, seeded by a 1x1x1 bottleneck projection of E4
        self.bottleneck = PointwiseConv3d(encoder_widths[3], encoder_widths[3])
        self.decoder = nn.ModuleList()
        c_in = encoder_widths[3]
        for k, w in enumerate(decoder_widths):
            # stage k undoes step 3 - k and works at level 3 - k; the last stage stays at level 1 (reading A) or
            # undoes the stem's step to the input grid, level 0 (reading B)
            level = self._decoder_level(k, full_resolution_decoder)
            self.decoder.append(DecoderStage(c_in, w, w, upsample=k < 3 or full_resolution_decoder,
                                             num_anchors=n_anch, dense=dense,
                                             se_reduction=se_reduction, stride=strides[level],
                                             kernel_size=kernel_sizes[level]))
            c_in = w
        # head: 1x1x1 to the classes, then (reading A) the transposed conv (kernel = stride = the stem's) back
        # to the input grid
        self.head = SegmentationHead(stem_channels, num_classes, upsample=not full_resolution_decoder,
                                     stride=strides[0], upsampling=head_upsampling)
        #: decoder stages (0-based) supervised by the auxiliary heads, finest first
        self.aux_stages = (2, 1) if deep_supervision else ()
        self.aux_heads = (DeepSupervisionHeads([decoder_widths[k] for k in self.aux_stages], num_classes)
                          if deep_supervision else None)
        #: return [logits, aux...] (nnU-Net's trainer toggles this through set_deep_supervision_enabled)
        self.deep_supervision = deep_supervision
        self.register_load_state_dict_pre_hook(_convert_legacy_state_dict)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _decoder_level(k: int, full_resolution_decoder: bool) -> int:
        """Resolution level (0 = input grid) of decoder stage ``k`` (0-based from the bottleneck)."""
        return 3 - k if k < 3 else (0 if full_resolution_decoder else 1)

    def minimum_input_size(self) -> Tuple[int, int, int]:
        """Smallest accepted spatial size per axis (the per-axis divisor)."""
        return self.divisor

    def deep_supervision_scales(self) -> List[List[float]]:
        """Per-axis scale of each output relative to the input (nnU-Net's ``deep_supervision_scales``):
        ``[[1, 1, 1]]`` plus one entry per auxiliary head, finest first (paper's schedule: 1/2, 1/4; per axis
        the inverse of the product of the strides down to the stage's level in general)."""
        scales = [[1.0, 1.0, 1.0]]
        factors = cumulative_factors(self.strides)
        for k in self.aux_stages:
            level = self._decoder_level(k, self.config["full_resolution_decoder"])
            scales.append([1.0 / f for f in factors[level]])
        return scales

    def parameter_breakdown(self) -> Dict[str, int]:
        """Parameters per paper component (the model card of ``lightmedseg profile``)."""
        def n(m: Optional[nn.Module]) -> int:
            return 0 if m is None else sum(p.numel() for p in m.parameters())
        parts = {"stem": n(self.stem), "anchor_detector": n(self.anchor_detector), "lspm": n(self.lspm)}
        for i, s in enumerate(self.encoder):
            parts[f"encoder_stage{i + 1}"] = n(s)
        parts["skip_router"] = n(self.skip_router)
        parts["bottleneck"] = n(self.bottleneck)
        for i, s in enumerate(self.decoder):
            parts[f"decoder_stage{i + 1}"] = n(s)
        parts["head"] = n(self.head)
        if self.aux_heads is not None:
            parts["aux_heads"] = n(self.aux_heads)
        assert sum(parts.values()) == n(self), "parameter breakdown misses a module"
        return parts

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"LightMedSeg expects a 5-D input (B, C, D, H, W), got shape {tuple(x.shape)}")
        weights = next(self.parameters()).dtype
        if weights != torch.float32:
            raise TypeError(f"LightMedSeg's weights are {weights}; it runs in float32 (some of its CPU operations "
                            f"have no {weights} kernel). Keep the network in float32 and use torch.autocast for "
                            f"mixed precision, as nnU-Net does on CUDA")
        if x.dtype != torch.float32 and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"LightMedSeg takes float32 input, got {x.dtype}: convert it with x.float() (or run "
                            f"under torch.autocast for mixed precision)")
        if x.shape[1] != self.input_channels:
            raise ValueError(f"LightMedSeg was built for {self.input_channels} input channel(s) but got "
                             f"{x.shape[1]}: the image modalities must match the network (check the dataset's "
                             f"channel_names / the checkpoint's plans)")
        small = minimum_size_message(x.shape[2:], self.divisor, self.strides)
        if small:
            raise ValueError(f"LightMedSeg input too small: {small} (stem and three poolings), got spatial size "
                             f"{tuple(x.shape[2:])}; use a larger patch size")

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        return self._forward(x, None)

    def forward_with_intermediates(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Forward pass that also returns what ``lightmedseg explain`` draws: ``anchors (B, N, 3)``,
        ``texture (B, 1, S/2)``, ``gate (B, 1, S/2)``, ``router_weights_stage{1,2} (B, 4, ...)``,
        ``blend_weights_stage{1..4} (B, 3, ...)`` and ``logits``. Grids are of the padded input."""
        info: Dict[str, torch.Tensor] = {}
        info["logits"] = self._forward(x, info)
        return info

    def _forward(self, x: torch.Tensor,
                 info: Optional[Dict[str, torch.Tensor]]) -> Union[torch.Tensor, List[torch.Tensor]]:
        self._check_input(x)
        size = x.shape[2:]
        pad = [(-s) % d for s, d in zip(size, self.divisor)]
        if any(pad):
            # F.pad takes the last axis first; pad only at the far end so cropping is a plain slice
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        # CPU: channels_last_3d (oneDNN's 3D convolutions are ~2x faster in it); the rule is in .layout
        x = to_channels_last(x)

        anchors = self.anchor_detector(x) if self.anchor_detector is not None else None
        f0 = self.stem(x)
        t = None
        if self.lspm is not None:
            if info is None:
                h, t = self.lspm(f0)
            else:
                h, t, gate, _ = self.lspm(f0, return_gate=True)
                info["texture"], info["gate"] = t, gate
        else:
            h = f0
        if anchors is not None and info is not None:
            info["anchors"] = anchors

        feats = []
        ts = t if t is not None else 0.5
        for i, stage in enumerate(self.encoder):
            if i > 0 and t is not None:
                # each stage's texture map is the previous one average-pooled by that pooling's per-axis stride
                # (= pooling the stem-grid map by the cumulative factor, which the paper's trilinear resampling
                # equals for factor 2; an axis with stride 1 is untouched), one small op per stage
                ts = downsample_avg(ts, self.strides[i])
            h = stage(h, ts, anchors)
            feats.append(h)
            if i < 3:
                h = F.max_pool3d(h, self.strides[i + 1])

        d = self.bottleneck(h)
        aux_feats: Dict[int, torch.Tensor] = {}
        for k, stage in enumerate(self.decoder):
            if info is None:
                d = stage(d, self.skip_router.skip(k, feats, f0), anchors)
            else:
                skip, rw = self.skip_router.skip(k, feats, f0, return_weights=True)
                d, bw = stage(d, skip, anchors, return_weights=True)
                if rw is not None:
                    info[f"router_weights_stage{k + 1}"] = rw
                info[f"blend_weights_stage{k + 1}"] = bw
            if k in self.aux_stages:
                aux_feats[k] = d

        out = self.head(d, size if any(pad) else None).contiguous()
        if not (self.deep_supervision and self.aux_heads is not None and info is None):
            return out
        outputs = [out]
        for y, scale in zip(self.aux_heads([aux_feats[k] for k in self.aux_stages]),
                            self.deep_supervision_scales()[1:]):
            # the crop nnU-Net's target downsampling uses (round(size * scale)), on the zero-padded grid
            keep = [int(round(s * sc)) for s, sc in zip(size, scale)]
            outputs.append(y[:, :, :keep[0], :keep[1], :keep[2]].contiguous())
        return outputs


def _convert_legacy_state_dict(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: checkpoints from before the ``seg_layers`` rename load unchanged, and so do
    checkpoints of the ``"blocks"`` head (kernel = stride, the default before the overlapping head) loaded into
    an ``"overlap"`` head: their kernel is embedded in the larger one (same outputs, see
    :func:`~.blocks.seg_head.embed_block_kernel`)."""
    rename_legacy_head_keys(state_dict, prefix)
    up = module.head.seg_layers[1] if len(module.head.seg_layers) > 1 else None
    key = prefix + "head.seg_layers.1.weight"
    if isinstance(up, OverlapExpandConv3d) and key in state_dict and \
            tuple(state_dict[key].shape[2:]) == tuple(up.stride) != tuple(up.kernel_size):
        state_dict[key] = embed_block_kernel(state_dict[key], up)
