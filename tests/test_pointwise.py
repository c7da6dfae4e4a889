"""The speed rewrites of issue 10: oneDNN-forced convolutions (with the flipped-kernel input gradient), the
matrix-product patch-expanding convolution, the CPU layout rule and the fused blends. Each gives what the
straightforward version gives (<= 1e-5 on fixed weights)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_lightmedseg.network import LightMedSeg
from nnunetv2_lightmedseg.network.blocks import (AdaptiveThreePath, LocalStructuralPrior, MultiScaleSkipRouter,
                                                 TextureRoutedBlock)
from nnunetv2_lightmedseg.network.convolutions import Conv3d, PatchExpandConv3d, PointwiseConv3d
from nnunetv2_lightmedseg.network.layout import CHANNELS_LAST, is_channels_last, to_channels_last


def _cl(*shape):
    return torch.randn(*shape).contiguous(memory_format=CHANNELS_LAST)


def _assert_same_as(m: nn.Module, ref: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``m`` and ``ref`` (same state dict) give the same output and the same gradients for input, weight and bias
    (<= 1e-5; weight sums over many voxels 1e-4 relative); returns ``m``'s output (with gradients)."""
    x = x.detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = m(x), ref(x_ref)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    for a, b in ((m.weight.grad, ref.weight.grad), (m.bias.grad, ref.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    return y


def _assert_close_to_float64(m: nn.Module, ref: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``m`` (float32) against ``ref`` (the same module in float64, same state dict): output and input gradient
    within 1e-5; weight and bias gradients, sums over 10^4-10^5 voxels, within 1e-5 of their largest entry.
    Returns ``m``'s output (with gradients)."""
    x = x.detach().requires_grad_()
    x_ref = x.detach().double().requires_grad_()
    y, y_ref = m(x), ref(x_ref)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g.double())
    torch.testing.assert_close(x.grad.double(), x_ref.grad, rtol=1e-5, atol=1e-5)
    for a, b in ((m.weight.grad, ref.weight.grad), (m.bias.grad, ref.bias.grad)):
        assert a.shape == b.shape and (a.double() - b).abs().max() <= 1e-5 * b.abs().max()
    return y


@pytest.mark.parametrize("cin,cout,shape", [(16, 16, (2, 6, 5, 7)), (1, 2, (3, 4, 4, 5)), (256, 64, (1, 3, 4, 3))])
def test_pointwise_conv_equals_conv3d_in_value_gradient_and_layout(cin, cout, shape):
    torch.manual_seed(0)
    m = PointwiseConv3d(cin, cout)
    ref = nn.Conv3d(cin, cout, 1)
    ref.load_state_dict(m.state_dict())  # same keys and shapes as nn.Conv3d(k=1): checkpoints load unchanged
    b, d, h, w = shape
    y = _assert_same_as(m, ref, _cl(b, cin, d, h, w))
    assert y.is_contiguous(memory_format=CHANNELS_LAST)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8),  # depthwise: flipped-kernel input grad
    dict(in_channels=8, out_channels=16, kernel_size=3, padding=1),  # dense: flipped, transposed kernel
    dict(in_channels=8, out_channels=8, kernel_size=(1, 3, 3), padding=(0, 1, 1), groups=8),  # in-plane
    dict(in_channels=4, out_channels=8, kernel_size=3, stride=(1, 2, 2), padding=1),  # strided: convolution_backward
    dict(in_channels=1, out_channels=4, kernel_size=3, stride=2, padding=1),  # one-channel image (the stem)
    dict(in_channels=24, out_channels=1, kernel_size=3, padding=1),  # one output channel: depthwise + channel sum
])
def test_onednn_conv_equals_conv3d_in_value_and_every_gradient(kwargs):
    torch.manual_seed(0)
    m = Conv3d(**kwargs)
    ref = nn.Conv3d(**kwargs)
    ref.load_state_dict(m.state_dict())
    _assert_same_as(m, ref, _cl(2, kwargs["in_channels"], 6, 7, 5))


def test_onednn_conv_runs_the_parent_off_the_cpu_float32_route():
    m = Conv3d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 5, 5, 5, dtype=torch.float64)
    assert m.double()(x).dtype == torch.float64  # oneDNN route is float32 only: the parent's conv ran
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.float()(x.float()).dtype == torch.bfloat16  # autocast: the parent's (autocast-aware) conv


def test_pointwise_conv_falls_back_to_the_convolution_off_the_fast_route():
    m = PointwiseConv3d(4, 3)
    x = torch.randn(2, 4, 3, 4, 5)  # default layout: not channels-last
    assert not is_channels_last(x)
    torch.testing.assert_close(m(x), F.conv3d(x, m.weight, m.bias))


@pytest.mark.parametrize("stride,shape", [((2, 2, 2), (3, 4, 3)), ((1, 2, 2), (5, 4, 6)), ((2, 1, 1), (2, 3, 3)), (2, (1, 1, 1))])
def test_patch_expand_equals_transposed_conv_in_value_gradient_and_layout(stride, shape):
    torch.manual_seed(0)
    m = PatchExpandConv3d(6, 4, stride)
    s = (stride,) * 3 if isinstance(stride, int) else stride
    ref = nn.ConvTranspose3d(6, 4, s, s)
    ref.load_state_dict(m.state_dict())
    x = _cl(2, 6, *shape)
    y = _assert_same_as(m, ref, x)  # with gradients: PyTorch's transposed conv, output put back in channels-last
    assert y.shape == (2, 4, shape[0] * s[0], shape[1] * s[1], shape[2] * s[2])
    assert y.is_contiguous(memory_format=CHANNELS_LAST)
    with torch.no_grad():  # inference: the matrix-product route
        y_ref = ref(x)
        y_inf = m(x)
        m.channels_last_output = False  # the head's: straight into the default layout
        y_default = m(x)
    torch.testing.assert_close(y_inf, y_ref, rtol=1e-5, atol=1e-5)
    assert y_inf.is_contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(y_default, y_ref, rtol=1e-5, atol=1e-5)
    assert y_default.is_contiguous()


@pytest.mark.parametrize("build,match", [
    (lambda: PointwiseConv3d(0, 4), "in_channels"),
    (lambda: PatchExpandConv3d(4, 4, (2, 2)), "stride"),
    (lambda: PatchExpandConv3d(4, 4, 0), "stride"),
])
def test_rewritten_convs_reject_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_layout_rule_leaves_tensors_off_the_cpu_rule_alone():
    x = torch.randn(1, 3, 4, 4, 4)
    assert to_channels_last(x).is_contiguous(memory_format=CHANNELS_LAST)
    v = torch.randn(3, 4)
    assert to_channels_last(v) is v  # not 5-D


@pytest.mark.parametrize("input_channels", [1, 4])
def test_every_convolution_of_the_network_sees_channels_last_on_the_cpu(input_channels):
    """A one-channel image is default-contiguous and channels-last at once, so the first convolution used to
    return the default layout and the whole network ran in it (3x slower depthwise backward passes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: PyTorch sends 1x1x1 convs to its non-oneDNN path (default layout)
    net = LightMedSeg(input_channels, 3, encoder_widths=(8, 8, 16, 16), router_channels=8)
    seen = []

    def hook(module, inputs, output):
        if inputs[0].shape[1] > 1:  # a one-channel tensor is both layouts
            seen.append((module, inputs[0].is_contiguous(memory_format=CHANNELS_LAST)))

    for mod in net.modules():
        if isinstance(mod, (nn.Conv3d, nn.ConvTranspose3d)):
            mod.register_forward_hook(hook)
    try:
        net(torch.randn(2, input_channels, 32, 32, 32))
    finally:
        torch.set_num_threads(threads)
    assert seen and all(ok for _, ok in seen), [m for m, ok in seen if not ok]


def test_fused_blends_equal_the_papers_formulas():
    torch.manual_seed(0)
    x = _cl(2, 8, 5, 6, 7)
    t = torch.rand(2, 1, 5, 6, 7).contiguous(memory_format=CHANNELS_LAST)
    route = TextureRoutedBlock(8)
    torch.testing.assert_close(route(x, t), t * route.detail(x) + (1 - t) * route.smooth(x), rtol=1e-5, atol=1e-5)

    paths = AdaptiveThreePath(8)
    y, w = paths(x, return_weights=True)
    expected = w[:, 0:1] * paths.depthwise(x) + w[:, 1:2] * paths.ghost(x) + w[:, 2:3] * paths.pointwise(x)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)

    lspm = LocalStructuralPrior(8, 16)
    with torch.no_grad():
        lspm.to_expert_weights.weight.copy_(torch.tensor([1.3, -0.7]).view(2, 1, 1, 1, 1))
        lspm.to_expert_weights.bias.copy_(torch.tensor([0.2, 0.5]))
    mixed, _, g, ew = lspm(x, return_gate=True)
    # the paper's expert weights: a softmax over a 1x1x1 conv of the gate (LSPM computes it as one sigmoid)
    expected_w = torch.softmax(F.conv3d(g, lspm.to_expert_weights.weight, lspm.to_expert_weights.bias), dim=1)
    torch.testing.assert_close(ew, expected_w, rtol=1e-5, atol=1e-6)
    e = F.conv3d(x, lspm.experts.weight, lspm.experts.bias)
    torch.testing.assert_close(mixed, ew[:, 0:1] * e[:, :16] + ew[:, 1:2] * e[:, 16:], rtol=1e-5, atol=1e-5)

    router = MultiScaleSkipRouter()
    feats = [_cl(1, c, 16 // 2 ** i, 16 // 2 ** i, 16 // 2 ** i) for i, c in enumerate((16, 32, 64, 128))]
    skip, rw = router.skip(1, feats, _cl(1, 8, 16, 16, 16), return_weights=True)
    assert skip.shape == (1, 32, 8, 8, 8)
    aligned = [router.proj[0](F.avg_pool3d(feats[0], 2)), router.proj[1](feats[1]),
               F.interpolate(router.proj[2](feats[2]), scale_factor=2, mode="trilinear", align_corners=False),
               F.interpolate(router.proj[3](feats[3]), scale_factor=4, mode="trilinear", align_corners=False)]
    fused = sum(rw[:, s:s + 1] * a for s, a in enumerate(aligned))
    torch.testing.assert_close(skip, router.out[1](fused), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,kernel,stride,spatial", [
    (3, 3, 1, (12, 20, 24)),  # the network's depthwise 3x3x3 convolutions (cross-sample pairs subtracted)
    (1, 3, 1, (10, 40, 48)),  # one sample: no cross-sample pairs
    (2, (1, 3, 3), 1, (8, 40, 48)),  # in-plane kernels (thick-slice plans): one 2-D call
    (2, 3, (1, 2, 2), (6, 48, 48)),  # in-plane stride
    (4, 3, 1, (2, 48, 48)),  # two slices per sample, the kernel reaches across the whole depth
])
def test_depthwise_weight_gradient_by_slices_equals_the_3d_gradient(batch, kernel, stride, spatial):
    """Against float64 (:func:`_assert_close_to_float64`); the weight and bias gradients, sums in another order,
    measured <= 2.5e-6 of their largest entry (the 3-D float32 route's own error: up to 3.6e-6)."""
    from nnunetv2_lightmedseg.network.convolutions import _OneDNNConvolution, _sliced_depthwise_applies
    torch.manual_seed(0)
    c = 16
    pad = tuple(k // 2 for k in ((kernel,) * 3 if isinstance(kernel, int) else kernel))
    m = Conv3d(c, c, kernel, stride, pad, groups=c)
    ref = nn.Conv3d(c, c, kernel, stride, pad, groups=c).double()
    ref.load_state_dict(m.state_dict())
    x = _cl(batch, c, *spatial)
    assert _sliced_depthwise_applies(x, m.weight, m.padding, m.stride, m.dilation, m.groups)  # not vacuous
    y = _assert_close_to_float64(m, ref, x)
    assert y.grad_fn.name().endswith(_OneDNNConvolution.__name__ + "Backward")


def test_depthwise_weight_gradient_by_slices_applies_only_where_it_is_exact_and_pays():
    from nnunetv2_lightmedseg.network.convolutions import SLICED_WEIGHT_GRAD_MIN_NUMEL, _sliced_depthwise_applies
    big = _cl(2, 16, 8, 64, 64)
    assert big.numel() >= SLICED_WEIGHT_GRAD_MIN_NUMEL
    dw = torch.zeros(16, 1, 3, 3, 3)
    one = (1, 1, 1)
    assert _sliced_depthwise_applies(big, dw, (1, 1, 1), one, one, 16)
    assert not _sliced_depthwise_applies(big, torch.zeros(16, 16, 3, 3, 3), (1, 1, 1), one, one, 1)  # dense
    assert not _sliced_depthwise_applies(big, dw, (1, 1, 1), (2, 1, 1), one, 16)  # strided along D
    assert not _sliced_depthwise_applies(big, dw, (0, 1, 1), one, one, 16)  # not 'same' along D
    assert not _sliced_depthwise_applies(big, dw, (1, 1, 1), one, (2, 1, 1), 16)  # dilated
    assert not _sliced_depthwise_applies(big.contiguous(), dw, (1, 1, 1), one, one, 16)  # default layout
    assert not _sliced_depthwise_applies(_cl(1, 16, 4, 8, 8), dw, (1, 1, 1), one, one, 16)  # small: one 3-D call


@pytest.mark.parametrize("shapes", [
    ((2, 8, 4, 5, 6), (2, 1, 4, 5, 6), (2, 8, 4, 5, 6)),  # three-path blend: one-channel weights
    ((2, 8, 1, 1, 1), (2, 8, 4, 5, 6), (2, 8, 1, 1, 1)),  # FiLM: per-channel scale and shift
    ((2, 8, 4, 5, 6), (2, 8, 4, 5, 6), (2, 8, 4, 5, 6)),  # no broadcasting
])
def test_addcmul_equals_torch_addcmul_in_value_and_gradients(shapes):
    from nnunetv2_lightmedseg.network.elementwise import addcmul
    torch.manual_seed(0)
    a, x, w = (torch.randn(*s, requires_grad=True) for s in shapes)
    a2, x2, w2 = (t.detach().clone().requires_grad_() for t in (a, x, w))
    y, y_ref = addcmul(a, x, w), torch.addcmul(a2, x2, w2)
    assert y.grad_fn.name() == "_AddCMulBackward"  # the lean backward ran
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    for t, r in ((a, a2), (x, x2), (w, w2)):
        torch.testing.assert_close(t.grad, r.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference: torch.addcmul itself
        assert addcmul(a, x, w).grad_fn is None
    assert addcmul(a.double(), x.double(), w.double()).grad_fn.name() == "AddcmulBackward0"


def test_mean_by_sum_equals_torch_mean_in_value_and_gradient():
    from nnunetv2_lightmedseg.network.elementwise import mean
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 5, 6, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    for dims, keep in (((2, 3, 4), False), ((1,), True)):
        y, y_ref = mean(x, dims, keep), x2.mean(dim=dims, keepdim=keep)
        torch.testing.assert_close(y, y_ref)
        g = torch.randn_like(y)
        y.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(x.grad, x2.grad)


def test_one_output_channel_conv_runs_as_a_depthwise_conv_and_a_channel_sum():
    """LSPM's gate (24 -> 1): the depthwise route, at a size where its weight gradient also runs as slices."""
    torch.manual_seed(0)
    m = Conv3d(24, 1, 3, padding=1)
    ref = nn.Conv3d(24, 1, 3, padding=1).double()
    ref.load_state_dict(m.state_dict())
    x = _cl(2, 24, 8, 24, 32)
    y = _assert_close_to_float64(m, ref, x)
    assert y.grad_fn.name() == "AddBackward0" and y.grad_fn.next_functions[0][0].name() == "SumBackward1"
    assert y.is_contiguous(memory_format=CHANNELS_LAST)
    with torch.no_grad():  # inference takes the same route
        torch.testing.assert_close(m(x), y.detach())


def test_mix_halves_equals_lerp_of_the_split_halves_in_value_gradient_and_layout():
    from nnunetv2_lightmedseg.network.elementwise import mix_halves
    torch.manual_seed(0)
    e = _cl(2, 16, 4, 5, 6).requires_grad_()
    w = torch.rand(2, 1, 4, 5, 6, requires_grad=True)
    e2, w2 = e.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = mix_halves(e, w)
    assert y.grad_fn.name() == "_MixHalvesBackward"
    a, b = e2.split(8, dim=1)
    y_ref = w2 * a + (1 - w2) * b
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(e.grad, e2.grad)
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-5)
    assert e.grad.is_contiguous(memory_format=CHANNELS_LAST)  # written into one channels-last tensor
    with torch.no_grad():
        torch.testing.assert_close(mix_halves(e, w), y_ref)
    with pytest.raises(ValueError, match="even number of channels"):
        mix_halves(torch.zeros(1, 3, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2))


def test_pointwise_forward_cat_equals_the_conv_of_the_concatenation():
    """Decoder fusion and skip-router controller: no concatenated tensor, same value and every gradient."""
    torch.manual_seed(0)
    m = PointwiseConv3d(24, 8)
    parts = [_cl(2, 16, 4, 5, 6).requires_grad_(), _cl(2, 8, 4, 5, 6).requires_grad_()]
    y = m.forward_cat(parts)
    assert y.is_contiguous(memory_format=CHANNELS_LAST)
    ref_parts = [p.detach().clone().requires_grad_() for p in parts]
    ref = nn.Conv3d(24, 8, 1)
    ref.load_state_dict(m.state_dict())
    y_ref = ref(torch.cat(ref_parts, dim=1))
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    y.backward(g)
    y_ref.backward(g)
    for a, b in [(p.grad, r.grad) for p, r in zip(parts, ref_parts)] + [(m.weight.grad, ref.weight.grad),
                                                                        (m.bias.grad, ref.bias.grad)]:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="16 channels together, the convolution takes 24"):
        m.forward_cat(parts[:1])
    off_route = [p.detach().double() for p in parts]  # float64: the plain concatenation and convolution
    torch.testing.assert_close(m.double().forward_cat(off_route), F.conv3d(torch.cat(off_route, 1), m.weight, m.bias))
