"""The network's convolutions, made fast on the CPU: drop-in subclasses of ``nn.Conv3d`` and
``nn.ConvTranspose3d`` with the same parameters, state-dict keys, shapes and mathematics (the measurements behind
each route: docs/decisions.md#cpu-convolutions).

* :class:`Conv3d` calls oneDNN directly. PyTorch's ``Conv3d`` picks its CPU kernel by size heuristics: with a
  batch of 1 (nnU-Net's sliding-window predictor) and a small grid (``C x D x H <= 20480``: every dense 3x3x3
  convolution of the hippocampus network, the deeper stages of any network), and for 1x1x1 convolutions on one
  thread, it takes the non-oneDNN ``slow_conv3d`` path (im2col + one GEMM per sample), many times slower, which
  also returns the default memory layout that every later channels-last op has to copy back.
  ``torch.ops.aten.mkldnn_convolution`` is
  PyTorch's own oneDNN entry point, with autograd (its backward is ``convolution_backward``); it is used for
  float32 CPU tensors outside autocast and outside the legacy ONNX exporter's trace (:mod:`.layout`), where
  the parent class's ``forward`` runs unchanged (CUDA, bf16/fp16 autocast, exported graphs).
* In training, the weight gradient of a depthwise convolution runs as one 2-D depthwise weight gradient per kernel
  depth over the B x D slices (:func:`_depthwise_weight_grad_by_slices`): oneDNN has no fast 3-D depthwise
  backward-weights kernel (it takes several times the forward).
* A dense convolution to one output channel (LSPM's gate) runs as a depthwise convolution and a channel sum
  (:meth:`Conv3d._one_output_channel`): oneDNN vectorises over output channels, so one cost as much as sixteen.
* :class:`PointwiseConv3d` is :class:`Conv3d` with a 1x1x1 kernel.
* :class:`PatchExpandConv3d` (transposed convolution whose kernel equals its stride, the decoder's and the
  head's upsampling) runs, for inference, as one matrix product ``(voxels x C_in) @ (C_in x prod(stride) C_out)``
  over channels-last memory followed by a 3-D pixel shuffle: every input voxel writes its own non-overlapping
  block. PyTorch sends these to ``slow_conv_transpose3d`` (single-threaded col2vol, default layout). With
  gradients the matrix product and the shuffle's backward cost more than ``slow_conv_transpose3d``'s, so training
  keeps the transposed convolution, its output put back in channels-last (the head's left in the default layout,
  where the loss reads it).

``torch.utils.flop_counter`` counts ``2 x MACs`` for every route, so the network's published FLOPs do not move
(it has no formula for ``aten.mkldnn_convolution``; importing this module registers the one it uses for
``aten.convolution``). Under ``torch.compile`` the parent classes' convolutions run: inductor plans its own oneDNN
kernels (and dynamo cannot trace oneDNN availability checks).

Shapes: :class:`Conv3d` as ``nn.Conv3d``; :class:`PointwiseConv3d` ``(B, C_in, D, H, W) -> (B, C_out, D, H, W)``;
:class:`PatchExpandConv3d` ``(B, C_in, D, H, W) -> (B, C_out, s_D D, s_H H, s_W W)`` with stride ``s`` (an int or
one per axis; an axis with stride 1 is not upsampled).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

from .checks import as_triple, check_positive_ints
from .layout import CHANNELS_LAST, cpu_layout_applies, is_channels_last, to_channels_last


#: oneDNN is built into this PyTorch (a constant: dynamo refuses to trace the check itself)
ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available()


@register_flop_formula(torch.ops.aten.mkldnn_convolution)
def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.mkldnn_convolution`` for ``torch.utils.flop_counter``: those of the same convolution."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True where :class:`Conv3d` calls oneDNN directly: float32 CPU tensors under the CPU layout rule, oneDNN
    built in and enabled, no CPU autocast (which would hand the convolution bf16/fp16 inputs), not while
    ``torch.compile`` traces."""
    if torch.compiler.is_compiling() or not ONEDNN_AVAILABLE:
        return False
    return (cpu_layout_applies(x) and x.dtype == torch.float32 and weight.dtype == torch.float32
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu"))


def _transposed_kernel(weight: torch.Tensor, groups: int) -> Optional[torch.Tensor]:
    """The kernel whose stride-1 'same' convolution is the input gradient of ``weight``'s (flipped in space,
    input and output channels swapped), for dense (``groups == 1``) and depthwise convolutions; else None."""
    if groups == 1:
        return weight.transpose(0, 1).flip(2, 3, 4)
    if weight.shape[1] == 1 and weight.shape[0] == groups:  # depthwise, one output channel per input channel
        return weight.flip(2, 3, 4)
    return None


#: below this many input elements the depthwise weight gradient stays one 3-D call (the slices' fixed cost wins)
SLICED_WEIGHT_GRAD_MIN_NUMEL = 1 << 18


def _sliced_depthwise_applies(x: torch.Tensor, weight: torch.Tensor, padding, stride, dilation, groups) -> bool:
    """True where :func:`_depthwise_weight_grad_by_slices` computes the weight gradient: a depthwise kernel
    ``(C, 1, k_D, k_H, k_W)``, stride 1 and 'same' padding along D, no dilation, channels-last input of at least
    :data:`SLICED_WEIGHT_GRAD_MIN_NUMEL` elements and more slices than the kernel reaches."""
    return (groups > 1 and weight.shape[1] == 1 and weight.shape[0] == groups == x.shape[1]
            and stride[0] == 1 and all(d == 1 for d in dilation) and 2 * padding[0] + 1 == weight.shape[2]
            and x.shape[2] > padding[0] and x.numel() >= SLICED_WEIGHT_GRAD_MIN_NUMEL
            and x.is_contiguous(memory_format=CHANNELS_LAST))


def _depthwise_weight_grad_by_slices(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding, stride,
                                     bias: bool):
    """Weight (and bias) gradient of a depthwise 3-D convolution as one 2-D depthwise weight gradient per kernel
    depth ``k_D`` over the ``B x D`` slices (see :func:`_sliced_depthwise_applies` for where it applies).

    Tap ``kd`` pairs output slice ``z`` with input slice ``z + s`` (``s = kd - pad_D``). In channels-last memory
    the ``B x D`` slices of a tensor are one 2-D channels-last batch (a view), so all pairs ``(n, n + s)`` over
    the flattened slice index are one 2-D call; the ``|s| (B - 1)`` pairs that cross from one sample into the
    next are computed separately (a few slices) and subtracted. Same sums in another order (float32 rounding,
    ~1e-6 relative; tested against ``convolution_backward``). Why: oneDNN has no fast 3-D depthwise
    backward-weights kernel (its generic grouped one took 6.1 ms for 7 x 16 x 24 x 32 x 24 channels-last, 2
    threads, 8.5x the forward; 65 ms for the 2 x 16 x 64^3 of a 128^3 training step), its 2-D one does the same
    sums in 1.2 ms (6.1 ms). Returns ``(grad_weight, grad_bias or None)``."""
    b, c, d, h, w = x.shape
    x2 = x.transpose(1, 2).reshape(b * d, c, h, w)  # views: channels-last (B, C, D, H, W) -> (B D, C, H, W)
    g2 = grad.transpose(1, 2).reshape(b * d, c, *grad.shape[3:])
    args = (stride[1:], padding[1:], (1, 1), False, (0, 0), c)

    def wgrad(dy, xs, w2, with_bias=False):
        return torch.ops.aten.convolution_backward(dy, xs, w2, [c] if with_bias else None, *args,
                                                   (False, True, with_bias))

    def slices(t, batches, planes):  # (B', C, |s|, H, W) -> contiguous 2-D batch
        return t[batches, :, planes].transpose(1, 2).reshape(-1, c, *t.shape[3:]).contiguous(
            memory_format=torch.channels_last)

    taps, gb = [], None
    for kd in range(weight.shape[2]):
        s = kd - padding[0]
        w2 = weight[:, :, kd]
        if s == 0:
            out = wgrad(g2, x2, w2, bias)
            taps.append(out[1])
            gb = out[2] if bias else None
            continue
        n = abs(s)
        if s > 0:  # output slice z reads input slice z + s
            gw = wgrad(g2[:b * d - n], x2[n:], w2)[1]
            # the pairs (last n output slices of sample i, first n input slices of sample i + 1)
            cross = ((slice(0, b - 1), slice(d - n, d)), (slice(1, b), slice(0, n)))
        else:
            gw = wgrad(g2[n:], x2[:b * d - n], w2)[1]
            cross = ((slice(1, b), slice(0, n)), (slice(0, b - 1), slice(d - n, d)))
        if b > 1:
            gw = gw - wgrad(slices(grad, *cross[0]), slices(x, *cross[1]), w2)[1]
        taps.append(gw)
    return torch.stack(taps, 2), gb


class _OneDNNConvolution(torch.autograd.Function):
    """oneDNN convolution whose input gradient, for stride-1 'same' dense and depthwise kernels, is computed as
    the forward convolution of the output gradient with the flipped kernel (the identity behind transposed
    convolutions). Measured on the 2-core CPU: oneDNN's backward-data pass of a depthwise 3x3x3 convolution over
    7 x 16 x 24 x 32 x 24 (channels-last) takes 5.3 ms, its forward 0.5 ms. The weight gradient of a depthwise
    kernel runs as 2-D slices (:func:`_depthwise_weight_grad_by_slices`, 5x faster); the other weight and bias
    gradients stay with ``convolution_backward`` (oneDNN's backward-weights pass: for dense kernels the slices
    were slower)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding, stride, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (tuple(padding), tuple(stride), tuple(dilation), groups, bias is not None)
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        padding, stride, dilation, groups, has_bias = ctx.conf
        want_x, want_w, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
        grad = grad.contiguous(memory_format=CHANNELS_LAST) if x.is_contiguous(memory_format=CHANNELS_LAST) else grad
        gx = gw = gb = None
        flipped = None
        same = (all(s == 1 for s in stride) and all(d == 1 for d in dilation)
                and all(2 * p + 1 == k for p, k in zip(padding, weight.shape[2:])))
        if want_x and same:
            flipped = _transposed_kernel(weight, groups)
        if want_x and flipped is not None:
            gx = torch.ops.aten.mkldnn_convolution(grad, flipped.contiguous(memory_format=CHANNELS_LAST), None,
                                                   padding, stride, dilation, groups)
        if want_w and _sliced_depthwise_applies(x, weight, padding, stride, dilation, groups):
            gw, gb = _depthwise_weight_grad_by_slices(grad, x, weight, padding, stride, want_b)
            want_w = want_b = False
        mask = [want_x and flipped is None, want_w, want_b]
        if any(mask):
            out = torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]] if has_bias else None,
                                                      stride, padding, dilation, False, [0, 0, 0], groups, mask)
            gx = out[0] if mask[0] else gx
            gw = out[1] if mask[1] else gw
            gb = out[2] if mask[2] else gb
        return gx, gw, gb, None, None, None, None


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (zero padding, no dilation) that runs on oneDNN for float32 CPU tensors whatever the size
    (see the module docstring); elsewhere ``nn.Conv3d.forward``. When gradients are needed (eager training), the
    input gradient of stride-1 convolutions is a forward convolution (:class:`_OneDNNConvolution`); tracing,
    ``torch.compile`` and inference use the aten op and its own autograd formula.

    A dense convolution to **one** output channel with a spatial kernel (LSPM's gate, 24 -> 1, 3x3x3) runs as
    the depthwise convolution of every input channel with its own slice of the kernel, summed over the channels
    (:meth:`_one_output_channel`): oneDNN vectorises over 16 output channels, so one output channel costs as much
    as sixteen (5.6 ms for 7 x 24 x 24 x 32 x 24, 2 threads, forward; its weight gradient 5.0 ms), while the
    depthwise route vectorises over the input channels. Same parameters and sums in another order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str) or not onednn_applies(x, self.weight):
            return super().forward(x)
        if self.out_channels == 1 and self.groups == 1 and self.in_channels > 1 and max(self.kernel_size) > 1:
            return self._one_output_channel(x)
        return self._onednn(x, self.weight, self.bias, self.groups)

    def _onednn(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], groups: int):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) and not torch.jit.is_tracing():
            y = _OneDNNConvolution.apply(x, weight, bias, self.padding, self.stride, self.dilation, groups)
        else:
            y = torch.ops.aten.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, groups)
        # oneDNN answers a one-channel input (both layouts at once) in the default layout: keep channels-last
        return to_channels_last(y)

    def _one_output_channel(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_c conv(x_c, w_{0,c}) + b``: a depthwise convolution with the kernel's input channels as its
        channels (``weight (1, C, k...)`` viewed as ``(C, 1, k...)``), then a sum over them."""
        y = self._onednn(x, self.weight.transpose(0, 1), None, self.in_channels).sum(dim=1, keepdim=True)
        return y if self.bias is None else y + self.bias.view(1, 1, 1, 1, 1)


class PointwiseConv3d(Conv3d):
    """``nn.Conv3d(in_channels, out_channels, 1)`` on oneDNN (see :class:`Conv3d`). Parameters
    ``weight (C_out, C_in, 1, 1, 1)`` and ``bias (C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        check_positive_ints("PointwiseConv3d", in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward_cat(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """``self(torch.cat(tensors, dim=1))`` without the concatenation: on the oneDNN route, the sum of each
        tensor's convolution with its slice of the weight's input channels. The concatenated tensor cost a full
        copy forward and, backward, its gradient's channel slices had to be copied again before each producer's
        convolution could read them (decoder fusion, skip-router controller). Same sums in another order."""
        total = sum(t.shape[1] for t in tensors)
        if total != self.in_channels:
            raise ValueError(f"PointwiseConv3d.forward_cat: the tensors have {total} channels together, the "
                             f"convolution takes {self.in_channels}")
        if len(tensors) == 1 or not all(onednn_applies(t, self.weight) for t in tensors):
            return self(torch.cat(tuple(tensors), dim=1))
        out, start = None, 0
        for t in tensors:
            w = self.weight[:, start:start + t.shape[1]].contiguous(memory_format=CHANNELS_LAST)
            y = self._onednn(t, w, self.bias if out is None else None, 1)
            out = y if out is None else out + y
            start += t.shape[1]
        return out


class PatchExpandConv3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d(in_channels, out_channels, kernel_size=stride, stride=stride)``: every input voxel
    writes its own non-overlapping ``s_D x s_H x s_W`` block, so on channels-last CPU tensors it runs as one
    ``F.linear`` to ``prod(stride) * C_out`` channels and a 3-D pixel shuffle (see the module docstring).
    Parameters ``weight (C_in, C_out, s_D, s_H, s_W)`` and ``bias (C_out)``, as ``nn.ConvTranspose3d``'s."""

    def __init__(self, in_channels: int, out_channels: int, stride: Union[int, Sequence[int]] = 2,
                 channels_last_output: bool = True) -> None:
        check_positive_ints("PatchExpandConv3d", in_channels=in_channels, out_channels=out_channels)
        s = as_triple(stride, "PatchExpandConv3d", "stride")
        if any(v < 1 for v in s):
            raise ValueError(f"PatchExpandConv3d: stride must be a positive int or one per axis (D, H, W), "
                             f"got {stride!r}")
        super().__init__(in_channels, out_channels, s, s)
        #: inference route's output layout: channels-last for the decoder, the default layout for the network's
        #: output (the head), which is returned in it: one copy (the shuffle) instead of two
        self.channels_last_output = channels_last_output

    def input_extent(self, out_size: int, axis: int) -> int:
        """Input voxels along ``axis`` that the first ``out_size`` output voxels read: ``ceil(out_size / s)``."""
        return -(-int(out_size) // self.stride[axis])

    def forward(self, x: torch.Tensor, out_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``out_size`` crops the output to its first ``out_size`` voxels per axis (a view), as
        :class:`OverlapExpandConv3d` does: the head calls both the same way."""
        y = self._expand(x)
        return y if out_size is None else y[:, :, :out_size[0], :out_size[1], :out_size[2]]

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        if not is_channels_last(x):
            return super().forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            y = super().forward(x)  # slow_conv_transpose3d: the default layout
            return to_channels_last(y) if self.channels_last_output else y
        b, _, d, h, w = x.shape
        sd, sh, sw = self.stride
        o = self.out_channels
        # columns ordered (i, j, k, o): the output channel stays innermost through the shuffle, and the bias is
        # the same for every (i, j, k), so it repeats into the matrix product
        weight = self.weight.permute(0, 2, 3, 4, 1).reshape(self.in_channels, sd * sh * sw * o).t()
        bias = None if self.bias is None else self.bias.repeat(sd * sh * sw)
        y = F.linear(x.permute(0, 2, 3, 4, 1), weight, bias).view(b, d, h, w, sd, sh, sw, o)
        if not self.channels_last_output:  # shuffle straight into (B, O, D', H', W'), the default layout
            return y.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, o, d * sd, h * sh, w * sw).contiguous()
        y = y.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d * sd, h * sh, w * sw, o)
        return y.permute(0, 4, 1, 2, 3)


def _parity_views(size: Sequence[int], stride: Sequence[int]):
    """For each parity ``(r_D, r_H, r_W)`` of a 3-D pixel shuffle with ``stride`` into an output of ``size``: the
    output slices it writes (``r::s`` per axis) and how many input voxels per axis fill them."""
    ranges = [range(s) for s in stride]
    for r in [(a, b, c) for a in ranges[0] for b in ranges[1] for c in ranges[2]]:
        counts = [-(-(n - ri) // s) for n, ri, s in zip(size, r, stride)]
        yield r, tuple(slice(ri, None, s) for ri, s in zip(r, stride)), counts


def pixel_shuffle_3d(y: torch.Tensor, stride: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """``(B, prod(stride) C, D, H, W)`` in channels-last memory, channels ordered ``(r_D, r_H, r_W, c)`` ->
    ``(B, C, *size)`` in the default layout, output voxel ``s m + r`` taken from input voxel ``m``, parity
    channel ``r`` (``size <= stride x (D, H, W)`` per axis: the rest is cropped). One copy of the permuted 8-D
    view, cut to the kept voxels first (a second, cropping copy only where a size is not a multiple of its
    stride)."""
    b, _, d, h, w = y.shape
    sd, sh, sw = stride
    c = y.shape[1] // (sd * sh * sw)
    m = [-(-int(n) // s) for n, s in zip(size, stride)]
    z = y.permute(0, 2, 3, 4, 1).view(b, d, h, w, sd, sh, sw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    out = z[:, :, :m[0], :, :m[1], :, :m[2]].reshape(b, c, m[0] * sd, m[1] * sh, m[2] * sw)
    if list(out.shape[2:]) != [int(n) for n in size]:
        out = out[:, :, :size[0], :size[1], :size[2]]
    return out.contiguous()


class _PixelShuffle3d(torch.autograd.Function):
    """:func:`pixel_shuffle_3d` whose backward pass (the inverse shuffle) is one strided copy per parity: the
    permute-and-copy that autograd would run writes channels-last memory through a 2-element innermost dimension,
    which PyTorch's copy kernel does not vectorise (several times slower). Input voxels whose outputs were
    cropped get zero gradient."""

    @staticmethod
    def forward(ctx, y, stride, size):
        ctx.conf = (tuple(y.shape), tuple(stride), tuple(size))
        return pixel_shuffle_3d(y, stride, size)

    @staticmethod
    def backward(ctx, grad):
        (b, channels, d, h, w), stride, size = ctx.conf
        sd, sh, sw = stride
        c = channels // (sd * sh * sw)
        full = all(n == s * m for n, s, m in zip(size, stride, (d, h, w)))
        gy = grad.new_empty((b, d, h, w, sd, sh, sw, c)) if full else grad.new_zeros((b, d, h, w, sd, sh, sw, c))
        for r, src, n in _parity_views(size, stride):
            gy[:, :n[0], :n[1], :n[2], r[0], r[1], r[2]] = grad[(slice(None), slice(None)) + src].permute(0, 2, 3, 4, 1)
        return gy.view(b, d, h, w, channels).permute(0, 4, 1, 2, 3), None, None


class OverlapExpandConv3d(nn.ConvTranspose3d):
    """Transposed convolution with kernel ``2 s`` and padding ``s / 2`` on every axis of stride ``s = 2`` (kernel
    1 where ``s = 1``): the output has ``s x`` the input's size, as :class:`PatchExpandConv3d`'s, but every output
    voxel mixes the 2 x 2 x 2 input voxels around it instead of copying one input voxel's block. Initialised as
    trilinear interpolation of each channel (per-axis kernel ``[1/4, 3/4, 3/4, 1/4]``, no cross-channel terms,
    zero bias), which the training then adapts. ``weight (C_in, C_out, k_D, k_H, k_W)`` and ``bias (C_out)``, as
    ``nn.ConvTranspose3d``'s.

    On channels-last float32 CPU tensors it runs as one oneDNN 3x3x3 convolution to ``prod(stride) x C_out``
    channels (:meth:`subpixel_kernel`) and a pixel shuffle into the default layout; elsewhere (CUDA, meta,
    tracing) as ``nn.ConvTranspose3d``. PyTorch's CPU transposed convolution is single-threaded col2vol: at
    1x4x128^3 the route took the head from 76 to 56 ms (1 thread; kernel-2 head: 50 ms). The sub-pixel kernel
    carries zero taps (27 x 8 instead of 64 taps per channel pair), which a FLOP counter run on the CPU would
    count; the published FLOPs count the transposed convolution (``count_flops`` runs on the meta device).

    Shapes: ``(B, C_in, D, H, W) -> (B, C_out, s_D D, s_H H, s_W W)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: Union[int, Sequence[int]] = 2) -> None:
        check_positive_ints("OverlapExpandConv3d", in_channels=in_channels, out_channels=out_channels)
        s = as_triple(stride, "OverlapExpandConv3d", "stride")
        if any(v not in (1, 2) for v in s):
            raise ValueError(f"OverlapExpandConv3d: stride must be 1 or 2 per axis (D, H, W), got {stride!r}")
        kernel = tuple(2 * v if v > 1 else 1 for v in s)
        padding = tuple(v // 2 for v in s)
        super().__init__(in_channels, out_channels, kernel, s, padding)
        with torch.no_grad():
            self.weight.zero_()
            taps = [torch.tensor([0.25, 0.75, 0.75, 0.25]) if k == 4 else torch.ones(1) for k in kernel]
            kernel3d = taps[0][:, None, None] * taps[1][None, :, None] * taps[2][None, None, :]
            for c in range(min(in_channels, out_channels)):
                self.weight[c, c] = kernel3d
            if self.bias is not None:
                self.bias.zero_()

    def input_extent(self, out_size: int, axis: int) -> int:
        """Input voxels along ``axis`` that the first ``out_size`` output voxels read (the head crops to them)."""
        return (int(out_size) - 1 + self.padding[axis]) // self.stride[axis] + 1

    def subpixel_kernel(self) -> torch.Tensor:
        """The same map as a stride-1 convolution to ``prod(stride) x C_out`` channels and a 3-D pixel shuffle:
        output voxel ``2m + r`` of an axis with stride 2 reads input voxels ``m - 1, m`` (``r = 0``, taps 3
        and 1) or ``m, m + 1`` (``r = 1``, taps 2 and 0), i.e. a 3-tap kernel per parity with one zero. Returns
        ``(prod(s) C_out, C_in, t_D, t_H, t_W)`` (``t = 3`` where ``s = 2``, 1 where ``s = 1``), output
        channels ordered ``(r_D, r_H, r_W, c_out)``; differentiable in ``self.weight``."""
        w = F.pad(self.weight, (0, 1, 0, 1, 0, 1))  # one zero tap at index k on every axis
        for axis, s in enumerate(self.stride):
            k = self.kernel_size[axis]
            # (parity r, offset d = -1, 0, +1) -> tap index (k: the zero tap)
            taps = [[3, 1, k], [k, 2, 0]] if s == 2 else [[0]]
            idx = torch.tensor(taps, device=w.device).reshape(-1)
            w = w.index_select(2 + 2 * axis, idx)
            w = w.unflatten(2 + 2 * axis, (s, len(taps[0])))
        # (C_in, C_out, rD, tD, rH, tH, rW, tW) -> (rD, rH, rW, C_out, C_in, tD, tH, tW)
        w = w.permute(2, 4, 6, 1, 0, 3, 5, 7)
        return w.reshape(-1, self.in_channels, *w.shape[-3:])

    def forward(self, x: torch.Tensor, out_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``out_size`` crops the output to its first ``out_size`` voxels per axis (the network's unpadded size;
        on the oneDNN route the cropped voxels are never written)."""
        if not (is_channels_last(x) and onednn_applies(x, self.weight)) or torch.jit.is_tracing():
            y = super().forward(x.contiguous())
            return y if out_size is None else y[:, :, :out_size[0], :out_size[1], :out_size[2]]
        # oneDNN (channels-last) instead of PyTorch's single-threaded col2vol ``slow_conv_transpose3d``: one
        # 3x3x3 convolution to prod(s) x C_out channels, then the pixel shuffle straight into the default layout
        weight = self.subpixel_kernel().contiguous(memory_format=CHANNELS_LAST)
        n = weight.shape[0] // self.out_channels
        bias = None if self.bias is None else self.bias.repeat(n)
        pad = tuple(1 if s == 2 else 0 for s in self.stride)
        size = tuple(int(v) for v in (out_size if out_size is not None else
                                      [s * m for s, m in zip(self.stride, x.shape[2:])]))
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            y = to_channels_last(_OneDNNConvolution.apply(x, weight, bias, pad, (1, 1, 1), (1, 1, 1), 1))
            return _PixelShuffle3d.apply(y, self.stride, size)
        y = to_channels_last(torch.ops.aten.mkldnn_convolution(x, weight, bias, pad, (1, 1, 1), (1, 1, 1), 1))
        return pixel_shuffle_3d(y, self.stride, size)
