"""Elementwise building blocks whose autograd formulas do less full-size work on the CPU (the measurements:
docs/decisions.md#cpu-elementwise-autograd).

* :func:`addcmul` — ``a + x * w`` (``torch.addcmul`` with ``value=1``). PyTorch's backward formula multiplies
  each factor by ``value`` before using it (``grad * (w * value)``, ``grad * (x * value)``), so where one
  factor is a full-size feature map and the other a broadcast one-channel map or per-channel vector (the
  decoder's three-path blend, FiLM, the skip router's fusion), every call pays one extra full-size multiply by 1
  in the backward pass. Its own backward computes ``grad * w`` and ``grad * x`` reduced to each input's shape,
  nothing else.
  Used for float32 CPU tensors that need gradients, in eager mode; elsewhere (inference, CUDA, autocast,
  tracing, ``torch.compile``) it is ``torch.addcmul``.
* :func:`mix_halves` — ``w e_0 + (1 - w) e_1`` for the two channel halves of one tensor ``e`` (LSPM's two experts,
  one 1x1x1 convolution). Through ``split`` and ``lerp``, autograd builds the two halves' gradients as separate
  tensors and concatenates them (``SplitBackward``); its own backward writes them
  straight into the halves of one channels-last gradient.
* :func:`mean` — a mean as a sum scaled on the reduced values. The backward of ``torch.mean`` materialises
  ``grad.expand(x.shape) / N``, a full-size division; that of ``sum`` is a broadcast view, and the scaling acts
  on the reduced result (Squeeze-and-Excitation's pooling, LSPM's texture map).

Same mathematics (tested against ``torch.addcmul``, ``split`` + ``lerp`` and ``torch.mean``: values and gradients).
"""
from __future__ import annotations

from typing import Sequence

import torch


def _custom_backward_applies(*tensors: torch.Tensor) -> bool:
    """True in eager CPU float32 training: gradients wanted, no autocast, not traced or compiled."""
    if not torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return (any(t.requires_grad for t in tensors)
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors))


class _AddCMul(torch.autograd.Function):
    """``a + x * w`` with broadcasting; backward without multiplications by ``value``."""

    @staticmethod
    def forward(ctx, a, x, w):
        ctx.save_for_backward(x, w)
        ctx.a_shape = a.shape
        return torch.addcmul(a, x, w)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        ga = gx = gw = None
        if ctx.needs_input_grad[0]:
            ga = grad if grad.shape == ctx.a_shape else grad.sum_to_size(ctx.a_shape)
        if ctx.needs_input_grad[1]:
            gx = grad * w
            gx = gx if gx.shape == x.shape else gx.sum_to_size(x.shape)
        if ctx.needs_input_grad[2]:
            gw = grad * x
            gw = gw if gw.shape == w.shape else gw.sum_to_size(w.shape)
        return ga, gx, gw


def addcmul(a: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a + x * w`` (broadcasting as ``torch.addcmul``) in one full-size op, with a leaner backward pass on the
    CPU (see the module docstring)."""
    if _custom_backward_applies(a, x, w):
        return _AddCMul.apply(a, x, w)
    return torch.addcmul(a, x, w)


class _MixHalves(torch.autograd.Function):
    """``lerp(e_1, e_0, w)`` over the channel halves of ``e``; the backward writes both halves' gradients into one
    tensor in ``e``'s layout."""

    @staticmethod
    def forward(ctx, e, w):
        c = e.shape[1] // 2
        ctx.save_for_backward(e, w)
        return torch.lerp(e[:, c:], e[:, :c], w)

    @staticmethod
    def backward(ctx, grad):
        e, w = ctx.saved_tensors
        c = e.shape[1] // 2
        ge = gw = None
        if ctx.needs_input_grad[0]:
            ge = torch.empty_like(e)  # e's layout (channels-last in the network)
            torch.mul(grad, w, out=ge[:, :c])
            torch.sub(grad, ge[:, :c], out=ge[:, c:])  # grad (1 - w)
        if ctx.needs_input_grad[1]:
            gw = (grad * (e[:, :c] - e[:, c:])).sum_to_size(w.shape)
        return ge, gw


def mix_halves(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w * e[:, :C] + (1 - w) * e[:, C:]`` for ``e (B, 2C, ...)`` and ``w`` broadcastable to ``(B, C, ...)``
    (one full-size op, ``lerp``), with a backward pass that does not concatenate (see the module docstring)."""
    if e.shape[1] % 2:
        raise ValueError(f"mix_halves: e must have an even number of channels (two halves), got {tuple(e.shape)}")
    if _custom_backward_applies(e, w):
        return _MixHalves.apply(e, w)
    c = e.shape[1] // 2
    e0, e1 = e.split(c, dim=1)
    return torch.lerp(e1, e0, w)


def mean(x: torch.Tensor, dims: Sequence[int], keepdim: bool = False) -> torch.Tensor:
    """``x.mean(dims, keepdim)`` as ``x.sum(dims, keepdim)`` times ``1 / N``: the backward pass broadcasts instead
    of dividing a full-size tensor (see the module docstring)."""
    n = 1
    for d in dims:
        n *= x.shape[d]
    return x.sum(dim=tuple(dims), keepdim=keepdim) * (1.0 / n)
