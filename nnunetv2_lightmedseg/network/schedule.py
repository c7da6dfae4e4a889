"""Resolution schedule of LightMedSeg: per-axis strides and kernel sizes, the rule that derives them from
nnU-Net's plans, and the per-axis resampling helpers every module uses.

Resolution levels. LightMedSeg works on five grids: level 0 is the (padded) input, level ``L`` (1-4) is the
grid after the ``L``-th downsampling step. The four steps are the stem's stride (level 0 -> 1, paper §3.1) and
the encoder's three max-poolings (levels 1 -> 2 -> 3 -> 4, §3.4). The paper (128^3 BraTS crops) halves every
axis at every step; ``strides`` generalises this to one stride per axis per step, ``kernel_sizes`` gives the
kernel of every 3x3x3 convolution per level (per axis).

==================  ==================================================================================
level               what runs there (its kernel is ``kernel_sizes[level]``; the step into it is
                    ``strides[level - 1]``)
==================  ==================================================================================
0  input grid       the head's transposed conv (kernel = stride = ``strides[0]``); no 3x3x3 conv
1  stem grid        stem (strided by ``strides[0]``), LSPM, encoder stage 1, decoder stages 3-4,
                    anchor-detector layer 1 (strided by ``strides[0]``)
2                   encoder stage 2, decoder stage 2, anchor-detector layer 2 (``strides[1]``)
3                   encoder stage 3, decoder stage 1, anchor-detector layer 3 (``strides[2]``)
4  bottleneck       encoder stage 4
==================  ==================================================================================

Every resampling between levels is by the exact per-axis factor: max-pooling and the texture map's average
pooling by ``strides[L]``, the decoder's and the head's transposed convs with kernel = stride =
``strides[L]``, the skip router's average pooling / trilinear upsampling by the product of the strides
between two levels. An axis with stride 1 at a step is left untouched by that step. The pad/crop divisor of
the network is, per axis, the product of that axis's four strides (:func:`divisor`).

**The rule that maps nnU-Net's plans onto the four steps** (:func:`schedule_from_plans`). nnU-Net plans its
U-Net with one stride per stage (``arch_kwargs['strides']``, stage 0 is ``[1, 1, 1]``) and one kernel per
stage (``arch_kwargs['kernel_sizes']``); for thick-slice data (e.g. ACDC cine-MRI at 10 x 1.56 x 1.56 mm)
it pools the in-plane axes first and z only once the spacing is about isotropic, and uses in-plane
``[1, 3, 3]`` kernels while z is more than twice as coarse. The rule:

1. **Strides**: LightMedSeg's four steps are nnU-Net's first four *non-trivial* strides (stages whose stride
   is not all ones), in order, per axis. ACDC-like ``[[1,1,1],[1,2,2],[1,2,2],[2,2,2],[1,2,2],[1,2,2]]`` gives
   ``[1,2,2],[1,2,2],[2,2,2],[1,2,2]``: the stem and the first pooling are in-plane, z is pooled once. An axis
   nnU-Net does not pool within those stages gets stride 1 throughout.
2. **Fewer than four planned steps** (small patches: nnU-Net stops pooling an axis at a feature map of 4
   voxels, e.g. hippocampus, 3 poolings): the missing steps repeat the *last* planned step. For isotropic
   plans that is ``[2, 2, 2]``, exactly the paper's (and this package's earlier) network; for anisotropic
   plans it keeps pooling only the axes nnU-Net was still pooling at the end, instead of halving an axis
   nnU-Net considered too coarse or too short. The internal padding then covers the extra step (the
   ``3d_fullres_lightmedseg_planned`` configuration rounds the patch up to the divisor instead).
   No pooling planned at all: the paper's ``[2, 2, 2]`` steps.
3. **Kernels** (:func:`schedule_from_plans` returns them; the trainer uses them only in the variant
   ``nnUNetTrainer_LightMedSeg_PlannedKernels``: by default every level keeps the paper's 3x3x3, which learned
   more reliably on the generated thick-slice data, see docs/decisions.md#planned-kernels):
   level ``L`` takes the kernel of the nnU-Net stage at the same resolution, i.e. the stage of the
   ``L``-th non-trivial stride (level 0: stage 0). This is nnU-Net's own pairing: the convolution that
   downsamples into a stage uses that stage's kernel, so our stem and anchor-detector layers use the kernel
   of the level they produce. Levels beyond the planned stages repeat the last planned kernel. Where nnU-Net
   plans ``[1, 3, 3]``, every depthwise, ghost, LSPM and anchor-detector convolution of that level is
   in-plane, so slices 5-10 mm apart are not mixed as if they were neighbours.

Isotropic plans (hippocampus ``[[1,1,1],[2,2,2],[2,2,2],[2,2,2]]``, BraTS, the 128^3 override, which inherits
``3d_fullres``'s architecture) therefore give ``strides = ((2, 2, 2),) * 4`` and ``kernel_sizes =
((3, 3, 3),) * 5``: the same network as before this option existed (same parameters, FLOPs, state-dict keys
and shapes, bit-identical outputs).

Choices where the paper is silent (it only trains isotropic 128^3 crops; see
docs/decisions.md#resolution-schedule): the anchor detector's three strided layers follow the first three steps
(its receptive field then grows in the same physical proportions as the encoder's); a stride of 1 on an axis
skips that axis in every resampling rather than resampling by 1.

All helpers take and return per-axis values in the tensor's axis order (D, H, W) = nnU-Net's (transposed)
axis order, which is the order of the plans' strides and kernels.
"""
from __future__ import annotations

import operator
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .layout import to_channels_last

Triple = Tuple[int, int, int]

#: downsampling steps of LightMedSeg: the stem and three poolings
NUM_STEPS = 4
#: the paper's schedule: every step halves every axis
DEFAULT_STRIDES: Tuple[Triple, ...] = ((2, 2, 2),) * NUM_STEPS
#: the paper's kernels: 3x3x3 on every level (levels 0-4)
DEFAULT_KERNEL_SIZES: Tuple[Triple, ...] = ((3, 3, 3),) * (NUM_STEPS + 1)
AXES = ("D", "H", "W")


# --------------------------------------------------------------------------------------------- validation
def _triples(value, name: str, count: int) -> Tuple[Triple, ...]:
    """``count`` per-axis int triples from nested sequences (lists from JSON, tuples, numpy ints)."""
    try:
        out = tuple(tuple(v) for v in value)
        if len(out) != count or any(len(t) != 3 for t in out):
            raise TypeError
        if any(isinstance(v, bool) for t in out for v in t):
            raise TypeError
        return tuple(tuple(operator.index(v) for v in t) for t in out)
    except TypeError:
        raise ValueError(f"LightMedSeg: {name} must be {count} triples of integers (one per axis D, H, W), "
                         f"got {value!r}") from None


def check_strides(strides: Optional[Sequence[Sequence[int]]]) -> Tuple[Triple, ...]:
    """``strides`` (four per-axis triples, or None for the paper's ``[2, 2, 2]`` x 4) as a tuple of int
    triples; ``ValueError`` for anything else."""
    if strides is None:
        return DEFAULT_STRIDES
    out = _triples(strides, "strides", NUM_STEPS)
    if any(v < 1 for t in out for v in t):
        raise ValueError(f"LightMedSeg: strides must be positive, got {strides!r}")
    return out


def check_kernel_sizes(kernel_sizes: Optional[Sequence[Sequence[int]]]) -> Tuple[Triple, ...]:
    """``kernel_sizes`` (five per-axis triples, levels 0-4, or None for 3x3x3 everywhere) as int triples;
    ``ValueError`` unless every entry is a positive odd number (odd kernels keep the grids aligned)."""
    if kernel_sizes is None:
        return DEFAULT_KERNEL_SIZES
    out = _triples(kernel_sizes, "kernel_sizes", NUM_STEPS + 1)
    if any(v < 1 or v % 2 == 0 for t in out for v in t):
        raise ValueError(f"LightMedSeg: kernel_sizes must be positive odd numbers, got {kernel_sizes!r}")
    return out


# --------------------------------------------------------------------------------------------- arithmetic
def cumulative_factors(strides: Sequence[Sequence[int]]) -> List[Triple]:
    """Per-axis downsampling factor of every level relative to the input: ``[(1, 1, 1), s0, s0*s1, ...]``
    (``len(strides) + 1`` entries)."""
    out = [(1, 1, 1)]
    for s in strides:
        out.append(tuple(a * int(b) for a, b in zip(out[-1], s)))
    return out


def divisor(strides: Sequence[Sequence[int]]) -> Triple:
    """Per-axis pad/crop divisor (and minimum input size): the product of that axis's strides."""
    return cumulative_factors(strides)[-1]


def ratio(finer: Sequence[int], coarser: Sequence[int]) -> Triple:
    """Per-axis factor between two cumulative factors (``coarser / finer``, exact integers)."""
    return tuple(int(c) // int(f) for f, c in zip(finer, coarser))


# ------------------------------------------------------------------------------------ rule for the plans
def _is_trivial(stride: Sequence[int]) -> bool:
    return all(int(s) == 1 for s in stride)


def schedule_from_plans(strides: Optional[Sequence[Sequence[int]]],
                        kernel_sizes: Optional[Sequence[Sequence[int]]]) -> Tuple[Tuple[Triple, ...],
                                                                                 Tuple[Triple, ...]]:
    """LightMedSeg's ``(strides, kernel_sizes)`` from nnU-Net's per-stage strides and kernels (see the module
    docstring for the rule and why). Either may be None (plans without them): the paper's defaults.

    >>> schedule_from_plans([[1,1,1],[1,2,2],[1,2,2],[2,2,2],[1,2,2],[1,2,2]],
    ...                     [[1,3,3],[1,3,3],[3,3,3],[3,3,3],[3,3,3],[3,3,3]])[0]
    ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2))
    """
    if strides is None:
        return DEFAULT_STRIDES, DEFAULT_KERNEL_SIZES
    stages = [tuple(int(v) for v in s) for s in strides]
    if any(len(s) != 3 for s in stages) or any(v < 1 for s in stages for v in s):
        raise ValueError(f"LightMedSeg needs 3D plans with positive per-axis strides, got strides {strides!r}")
    if kernel_sizes is not None:
        kernels = [tuple(int(v) for v in k) for k in kernel_sizes]
        if len(kernels) != len(stages) or any(len(k) != 3 for k in kernels):
            raise ValueError(f"LightMedSeg: the plans' kernel_sizes {kernel_sizes!r} do not match their strides "
                             f"{strides!r} (one 3D kernel per stage expected)")
    else:
        kernels = [(3, 3, 3)] * len(stages)
    steps: List[Triple] = []
    # level 0 is the input grid: nnU-Net's stage 0 when it does not downsample, else no stage (use stage 0's)
    level_kernels: List[Triple] = [kernels[0]]
    for s, k in zip(stages, kernels):
        if _is_trivial(s) or len(steps) == NUM_STEPS:
            continue
        steps.append(s)
        level_kernels.append(k)
    if not steps:
        return DEFAULT_STRIDES, tuple([kernels[0]] * (NUM_STEPS + 1))
    while len(steps) < NUM_STEPS:
        steps.append(steps[-1])
        level_kernels.append(level_kernels[-1])
    return check_strides(steps), check_kernel_sizes(level_kernels)


# ------------------------------------------------------------------------------------------- resampling
def pad_for(kernel: Sequence[int]) -> Triple:
    """'Same' padding of an odd per-axis kernel."""
    return tuple(int(k) // 2 for k in kernel)


def is_identity(factor: Sequence[int]) -> bool:
    return all(int(f) == 1 for f in factor)


def downsample_avg(x: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Average-pool ``(B, C, D, H, W)`` by an exact per-axis integer ``factor`` (anti-aliased; for a factor
    of 2 it equals trilinear resampling, ``align_corners=False``). Identity when every factor is 1. On the CPU
    the result is put back in channels-last (``avg_pool3d`` returns the default layout; see :mod:`.layout`)."""
    if is_identity(factor):
        return x
    k = tuple(int(f) for f in factor)
    return to_channels_last(F.avg_pool3d(x, kernel_size=k, stride=k))


def upsample_trilinear(x: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Trilinear upsampling of ``(B, C, D, H, W)`` by a per-axis integer ``factor`` (``align_corners=False``;
    an axis with factor 1 is left exactly as it is). Identity when every factor is 1."""
    if is_identity(factor):
        return x
    return F.interpolate(x, scale_factor=tuple(float(f) for f in factor), mode="trilinear", align_corners=False)


def resample_between(x: torch.Tensor, source: Sequence[int], target: Sequence[int]) -> torch.Tensor:
    """Resample from the grid with cumulative factor ``source`` to the one with factor ``target``
    (:func:`cumulative_factors`): average pooling towards coarser grids, trilinear upsampling towards finer
    ones. The factors must be ordered the same way on every axis (they are, between levels)."""
    if all(int(s) <= int(t) for s, t in zip(source, target)):
        return downsample_avg(x, ratio(source, target))
    if all(int(s) >= int(t) for s, t in zip(source, target)):
        return upsample_trilinear(x, ratio(target, source))
    raise ValueError(f"cannot resample between grids with factors {tuple(source)} and {tuple(target)}")


def minimum_size_message(size: Sequence[int], minimum: Sequence[int], strides: Sequence[Sequence[int]],
                         what: str = "spatial axis") -> Optional[str]:
    """The 'too small' message naming every axis below its minimum, or None when the size is large enough.
    (Sizes are compared as they are, not through ``int()``: under ``torch.export`` they are symbolic, and
    ``int()`` would specialise the exported graph to the example's size.)"""
    bad = [(i, int(s), int(m)) for i, (s, m) in enumerate(zip(size, minimum)) if s < m]
    if not bad:
        return None
    parts = []
    for i, s, m in bad:
        factors = " x ".join(str(int(st[i])) for st in strides)
        parts.append(f"{what} {i} ({AXES[i]}) is {s} voxels but must be at least {m} (its strides {factors})")
    return "; ".join(parts)


def describe(strides: Sequence[Sequence[int]], kernel_sizes: Sequence[Sequence[int]]) -> str:
    """One line for logs: ``strides [2,2,2]x4, kernels 3x3x3`` or the full per-step lists."""
    if tuple(map(tuple, strides)) == DEFAULT_STRIDES and tuple(map(tuple, kernel_sizes)) == DEFAULT_KERNEL_SIZES:
        return "isotropic (strides [2, 2, 2] x 4, kernels 3x3x3; the paper's)"
    return (f"strides {[list(s) for s in strides]}, kernels per level {[list(k) for k in kernel_sizes]}, "
            f"divisor {list(divisor(strides))}")


__all__ = ["NUM_STEPS", "DEFAULT_STRIDES", "DEFAULT_KERNEL_SIZES", "check_strides", "check_kernel_sizes",
           "cumulative_factors", "divisor", "ratio", "schedule_from_plans", "pad_for", "downsample_avg",
           "upsample_trilinear", "resample_between", "minimum_size_message", "describe"]
