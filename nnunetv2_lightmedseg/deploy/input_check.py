"""A warning naming the case when nnU-Net's predictor feeds the network an image with NaN/Inf voxels.

One NaN voxel makes nnU-Net's z-score normalisation NaN everywhere, so the whole prediction is meaningless, and
neither nnU-Net nor PyTorch says so. The trainer's ``build_network_architecture`` (what ``nnUNetv2_predict`` builds
the network with) attaches a forward pre-hook that checks each inference input once and warns, naming the file the
predictor is writing (read from its ``predict_from_data_iterator`` frame, else "the current case"). Training, export,
tracing and compilation are untouched (the hook returns at once there), and ``forward`` itself stays free of
data-dependent control flow.
"""
from __future__ import annotations

import inspect
import os
import warnings
from typing import Optional

import torch
from torch import nn

_HOOK_ATTR = "_lightmedseg_non_finite_hook"


def _inference_call(module: nn.Module) -> bool:
    return not (module.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


def current_case() -> Optional[str]:
    """The output file nnU-Net's predictor is working on (its ``ofile`` local), if a caller frame has one."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            ofile = frame.f_locals.get("ofile") if frame.f_code.co_name == "predict_from_data_iterator" else None
            if isinstance(ofile, str):
                return os.path.basename(ofile)
            frame = frame.f_back
    finally:
        del frame
    return None


def _check(module: nn.Module, args) -> None:
    if not args or not isinstance(args[0], torch.Tensor) or not _inference_call(module):
        return
    x = args[0]
    if x.device.type == "meta" or bool(torch.isfinite(x).all()):  # meta: FLOP counting, no values to check
        return
    case = current_case() or "the current case"
    if getattr(module, "_lightmedseg_warned_case", None) == case:
        return  # once per case, not once per sliding-window patch
    module._lightmedseg_warned_case = case
    bad = int(x.numel() - torch.isfinite(x).sum())
    warnings.warn(f"{case}: the network's input holds {bad} NaN/Inf values of {x.numel()} in this patch: the image "
                  f"has NaN or Inf voxels, which nnU-Net's normalisation spreads to the whole image, so this "
                  f"segmentation is meaningless. Replace them in the image (e.g. with its minimum) and predict "
                  f"again", RuntimeWarning, stacklevel=2)


def attach_non_finite_warning(network: nn.Module) -> nn.Module:
    """Register the check on ``network`` (once); returns it."""
    if getattr(network, _HOOK_ATTR, None) is None:
        setattr(network, _HOOK_ATTR, network.register_forward_pre_hook(_check))
    return network
