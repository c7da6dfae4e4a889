"""Memory layout of LightMedSeg on the CPU: one rule, used by the network, its blocks and its convolutions.

On the CPU the network runs in ``torch.channels_last_3d`` (oneDNN's 3-D convolutions are ~2x faster in it, and
their backward passes ~3x: depthwise 3x3x3 weight/input gradients over 7 x 16 x 24 x 32 x 24 take 28 ms in
channels-last and 83 ms in the default layout, measured with one thread). The rule: a 5-D CPU tensor is put in
channels-last, except while the legacy ONNX exporter traces the network (ONNX tensors have no layout, and its
``contiguous()`` cannot take this memory format). The checks are constants for ``torch.compile`` and
``torch.export`` (device and layout are part of their guards).

A tensor with one channel is channels-last and default-contiguous at once, so a convolution of a one-channel
image (hippocampus MRI, CT, cine-MRI) returns the default layout and every later op would inherit it; the
network's convolutions (:mod:`.convolutions`) and average pooling (:func:`.schedule.downsample_avg`, whose CPU
kernel returns the default layout) convert their outputs with :func:`to_channels_last` (a no-op when they are
already channels-last).
"""
from __future__ import annotations

import torch

CHANNELS_LAST = torch.channels_last_3d


def cpu_layout_applies(x: torch.Tensor) -> bool:
    """True for a 5-D CPU tensor outside the legacy ONNX exporter's trace."""
    if torch.jit.is_tracing() and torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.dim() == 5


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory where the CPU layout rule applies, else ``x`` unchanged."""
    return x.contiguous(memory_format=CHANNELS_LAST) if cpu_layout_applies(x) else x


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a CPU tensor in channels-last memory under the layout rule (PatchExpandConv3d's matrix route)."""
    return cpu_layout_applies(x) and x.is_contiguous(memory_format=CHANNELS_LAST)
