"""Per-block tests of the LightMedSeg building blocks (paper §3.1-3.6): shapes, invariants, bad arguments."""
import pytest
import torch
import torch.nn.functional as F

from nnunetv2_lightmedseg.network.blocks import (AdaptiveThreePath, AnchorFiLM, AnchorPositionBias, GhostConv3D,
                                                 GlobalAnchorDetector, LocalStructuralPrior, MultiScaleSkipRouter,
                                                 SqueezeExcite3D, TextureRoutedBlock)
from nnunetv2_lightmedseg.network.blocks.skip_router import resample_pow2


def nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("stride,size,expected", [(1, 12, 12), (2, 12, 6), (2, 13, 7)])
def test_ghost_conv_shapes(stride, size, expected):
    m = GhostConv3D(3, 8, 3, stride)
    y = m(torch.randn(2, 3, size, size + 2, size))
    assert y.shape == (2, 8, expected, (size + 2 + stride - 1) // stride, expected)


def test_ghost_conv_is_cheaper_than_dense_and_ghost_half_is_depthwise_of_primary():
    g, d = GhostConv3D(16, 32), GhostConv3D(16, 32, dense=True)
    # primary 16->16 k3 + depthwise 16 k3 + GN vs dense 16->32 k3 + GN
    assert nparams(g) == (16 * 16 * 27 + 16) + (16 * 27 + 16) + 64
    assert nparams(d) == 16 * 32 * 27 + 32 + 64
    assert nparams(g) < 0.55 * nparams(d)
    g.eval()
    x = torch.randn(1, 16, 6, 6, 6)
    primary = g.primary(x)
    # the ghost half is a depthwise conv of the primary half: y = SiLU(GN([P, DW(P)]))
    torch.testing.assert_close(g(x), F.silu(g.norm(torch.cat((primary, g.cheap(primary)), 1))))
    assert g.cheap.groups == 16 and g.cheap.in_channels == g.cheap.out_channels == 16


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=0, out_channels=8), r"GhostConv3D: in_channels must be a positive integer, got 0"),
    (dict(in_channels=4, out_channels=7), r"GhostConv3D: out_channels must be even .*got 7"),
    (dict(in_channels=4, out_channels=6), r"GhostConv3D: out_channels must be divisible by norm_groups .*"
                                          r"out_channels=6, norm_groups=4"),
    (dict(in_channels=4, out_channels=8, kernel_size=2), r"GhostConv3D: kernel_size must be odd .*got 2"),
    (dict(in_channels=4, out_channels=8, kernel_size=(1, 3, 4)), r"kernel_size must be odd .*got \(1, 3, 4\)"),
])
def test_ghost_conv_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GhostConv3D(**kwargs)


def _seg_head():
    from nnunetv2_lightmedseg.network.blocks.seg_head import SegmentationHead
    return SegmentationHead


def _overlap():
    from nnunetv2_lightmedseg.network.convolutions import OverlapExpandConv3d
    return OverlapExpandConv3d


@pytest.mark.parametrize("build,match", [
    (lambda: SqueezeExcite3D(0), "SqueezeExcite3D: channels must be a positive integer, got 0"),
    (lambda: SqueezeExcite3D(8, reduction=0), "SqueezeExcite3D: reduction must be a positive integer, got 0"),
    (lambda: TextureRoutedBlock(-1), "TextureRoutedBlock: channels must be a positive integer, got -1"),
    (lambda: AdaptiveThreePath(0), "AdaptiveThreePath: channels must be a positive integer, got 0"),
    (lambda: AnchorFiLM(0, 16), "AnchorFiLM: num_anchors must be a positive integer, got 0"),
    (lambda: AnchorPositionBias(8, 2.5), "AnchorPositionBias: channels must be a positive integer, got 2.5"),
    (lambda: GlobalAnchorDetector(0), "GlobalAnchorDetector: in_channels must be a positive integer, got 0"),
    (lambda: GlobalAnchorDetector(1, num_anchors=True), "num_anchors must be a positive integer, got True"),
    (lambda: _seg_head()(8, 3, True, 2, "bilinear"), r"upsampling must be one of \('blocks', 'overlap'\)"),
    (lambda: _overlap()(3, 3, 3), r"OverlapExpandConv3d: stride must be 1 or 2 per axis"),
    (lambda: _overlap()(0, 3, 2), r"OverlapExpandConv3d: in_channels must be a positive integer, got 0"),
])
def test_blocks_reject_bad_sizes_with_a_value_error(build, match):
    """ValueError, not assert: the checks must also hold under ``python -O``."""
    with pytest.raises(ValueError, match=match):
        build()


def test_anchor_detector_budget_and_range():
    m = GlobalAnchorDetector(4, 8)
    assert nparams(m) == 8640  # the paper's 8.6K
    a = m(torch.randn(3, 4, 20, 24, 17) * 10)
    assert a.shape == (3, 8, 3)
    assert (a > 0).all() and (a < 1).all()
    # sample specific: different inputs give different anchors
    assert not torch.allclose(a[0], a[1])


def test_lspm_texture_map_is_a_normalised_high_pass():
    m = LocalStructuralPrior(8, 16)
    const = torch.ones(1, 8, 10, 10, 10)
    t = m.texture_map(const)
    # interior of a constant map: a box filter changes nothing, so no texture (border sees zero padding)
    assert t[..., 1:-1, 1:-1, 1:-1].abs().max() < 1e-5
    x = torch.randn(2, 8, 10, 12, 9)
    mixed, t, g, w = m(x, return_gate=True)
    assert mixed.shape == (2, 16, 10, 12, 9) and t.shape == (2, 1, 10, 12, 9) and g.shape == t.shape
    assert t.min() >= 0 and torch.allclose(t.amax(dim=(2, 3, 4)), torch.ones(2, 1), atol=1e-4)
    assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(w.sum(1), torch.ones(2, 10, 12, 9))


def test_lspm_mixer_is_a_voxelwise_convex_combination_of_two_experts():
    m = LocalStructuralPrior(8, 16)
    x = torch.randn(1, 8, 6, 6, 6)
    mixed, _, _, w = m(x, return_gate=True)
    e = m.experts(x)
    lo = torch.minimum(e[:, :16], e[:, 16:]) - 1e-5
    hi = torch.maximum(e[:, :16], e[:, 16:]) + 1e-5
    assert ((mixed >= lo) & (mixed <= hi)).all()


def test_film_is_identity_with_zero_projections_and_conditions_per_channel():
    m = AnchorFiLM(8, 16)
    x = torch.randn(2, 16, 4, 4, 4)
    a = torch.rand(2, 8, 3)
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    torch.testing.assert_close(m(x, a), x)
    torch.nn.init.normal_(m.to_shift.weight)
    y = m(x, a)
    shift = (y - x).mean(dim=(2, 3, 4))
    torch.testing.assert_close((y - x), shift[:, :, None, None, None].expand_as(x))  # one shift per channel
    assert not torch.allclose(shift[0], shift[1])  # and per sample (anchors differ)


def test_texture_routing_selects_detail_where_t_is_one_and_smooth_where_zero():
    m = TextureRoutedBlock(8)
    x = torch.randn(1, 8, 5, 5, 5)
    torch.testing.assert_close(m(x, torch.ones(1, 1, 5, 5, 5)), m.detail(x))
    torch.testing.assert_close(m(x, torch.zeros(1, 1, 5, 5, 5)), m.smooth(x))
    half = m(x, 0.5)
    torch.testing.assert_close(half, 0.5 * (m.detail(x) + m.smooth(x)))


@pytest.mark.parametrize("c,hidden", [(8, 4), (16, 5), (128, 42)])
def test_squeeze_excite_bottleneck_floor_and_gating(c, hidden):
    m = SqueezeExcite3D(c)
    assert m.fc1.out_features == hidden  # max(4, C // 3)
    x = torch.rand(2, c, 4, 4, 4) + 0.1
    y = m(x)
    ratio = y / x
    assert ((ratio > 0) & (ratio < 1)).all()
    # one scale per (sample, channel)
    torch.testing.assert_close(ratio, ratio[..., :1, :1, :1].expand_as(ratio))


def test_position_bias_equals_the_full_displacement_map_projected():
    n, c, d, h, w = 5, 6, 7, 9, 4
    m = AnchorPositionBias(n, c)
    anchors = torch.rand(2, n, 3)
    x = torch.randn(2, c, d, h, w)
    # brute force: the N x D x H x W cumulative signed offset map, then the 1x1x1 conv
    cd = (torch.arange(d) + 0.5) / d
    ch = (torch.arange(h) + 0.5) / h
    cw = (torch.arange(w) + 0.5) / w
    grid = torch.stack(torch.meshgrid(cd, ch, cw, indexing="ij"))  # (3, D, H, W)
    delta = (grid[None, None] - anchors[:, :, :, None, None, None]).sum(2)  # (B, N, D, H, W)
    expected = x + m.proj(delta)
    torch.testing.assert_close(m(x, anchors), expected, rtol=1e-5, atol=1e-5)


def test_adaptive_three_path_weights_are_a_softmax_and_shapes_hold():
    m = AdaptiveThreePath(16)
    x = torch.randn(2, 16, 6, 5, 4)
    y, w = m(x, return_weights=True)
    assert y.shape == x.shape and w.shape == (2, 3, 6, 5, 4)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 6, 5, 4))
    assert (w > 0).all()


def _feats(b=1, s=16):
    return [torch.randn(b, c, s // 2 ** i, s // 2 ** i, s // 2 ** i) for i, c in enumerate((16, 32, 64, 128))]


def test_skip_router_shapes_and_weights():
    r = MultiScaleSkipRouter()
    feats = _feats(2)
    stem = torch.randn(2, 8, 16, 16, 16)
    expected = [(2, 64, 4, 4, 4), (2, 32, 8, 8, 8), (2, 16, 16, 16, 16), (2, 8, 16, 16, 16)]
    for k in range(4):
        y, w = r.skip(k, feats, stem, return_weights=True)
        assert y.shape == expected[k]
        if k < 2:
            assert w.shape == (2, 4) + expected[k][2:]
            torch.testing.assert_close(w.sum(1), torch.ones((2,) + expected[k][2:]))
        else:
            assert w is None


def test_skip_router_projection_order_matches_the_papers_order():
    """Projecting on the coarser grid is an optimisation: it must equal 'resample, then project'."""
    r = MultiScaleSkipRouter()
    feats = _feats(1)
    stem = torch.randn(1, 8, 16, 16, 16)
    for k, level in ((0, 2), (1, 1)):
        aligned = [r.proj[s](resample_pow2(f, s - level)) for s, f in enumerate(feats)]
        w = torch.softmax(r.controller(torch.cat(aligned, 1)), 1)
        ref = r.out[k](sum(w[:, s:s + 1] * aligned[s] for s in range(4)))
        torch.testing.assert_close(r.skip(k, feats, stem), ref, rtol=1e-4, atol=1e-5)


def test_plain_skips_are_the_same_resolution_encoder_outputs():
    r = MultiScaleSkipRouter(routed=False)
    feats = _feats(1)
    stem = torch.randn(1, 8, 16, 16, 16)
    assert r.skip(0, feats, stem) is feats[2] and r.skip(1, feats, stem) is feats[1]
    assert r.skip(2, feats, stem) is feats[0] and r.skip(3, feats, stem) is stem
    assert nparams(r) == 0


def test_resample_pow2_down_by_two_equals_trilinear():
    x = torch.randn(1, 3, 8, 8, 8)
    torch.testing.assert_close(resample_pow2(x, -1), F.interpolate(x, scale_factor=0.5, mode="trilinear"))
    assert resample_pow2(x, 2).shape[2:] == (32, 32, 32)
    assert resample_pow2(x, 0) is x


# ------------------------------------------------------------------------------------------- segmentation head
@pytest.mark.parametrize("stride", [2, (1, 2, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_overlapping_upsampling_runs_as_a_subpixel_convolution_with_the_same_numbers(stride, train):
    """On channels-last CPU tensors ``OverlapExpandConv3d`` runs as one oneDNN 3x3x3 convolution to
    prod(stride) x C_out channels and a pixel shuffle (issue 10: PyTorch's col2vol kernel is single-threaded);
    output and gradients must be those of the transposed convolution it stands for, and ``subpixel_kernel``
    must reuse every weight exactly once per parity (no weight dropped, none duplicated)."""
    from nnunetv2_lightmedseg.network.convolutions import OverlapExpandConv3d
    from nnunetv2_lightmedseg.network.layout import to_channels_last
    torch.manual_seed(0)
    up = OverlapExpandConv3d(5, 3, stride).train(train)
    with torch.no_grad():
        up.weight.normal_()
        up.bias.normal_()
    x = to_channels_last(torch.randn(2, 5, 6, 7, 5))
    x_ref = x.detach().contiguous().requires_grad_(train)
    x = x.detach().requires_grad_(train)
    with torch.set_grad_enabled(train):
        got = up(x)
        ref = F.conv_transpose3d(x_ref, up.weight, up.bias, up.stride, up.padding)
    assert got.shape == ref.shape and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    k = up.subpixel_kernel()
    assert k.shape[0] == 3 * (8 if stride == 2 else 4)
    assert float(k.abs().sum()) == pytest.approx(float(up.weight.abs().sum()), rel=1e-5)
    if train:
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(got, [x, up.weight, up.bias], g),
                        torch.autograd.grad(ref, [x_ref, up.weight, up.bias], g)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)



@pytest.mark.parametrize("stride,out_size", [(2, (12, 13, 9)), (2, (11, 14, 10)), ((1, 2, 2), (6, 13, 10))])
def test_overlapping_upsampling_crops_as_it_shuffles_with_the_transposed_convs_numbers(stride, out_size):
    """``OverlapExpandConv3d(x, out_size)`` writes only the kept voxels (its pixel shuffle has its own backward
    pass, strided copies): value, layout and every gradient as the transposed convolution cropped afterwards,
    for even and odd sizes (odd: some parities stop one voxel earlier)."""
    from nnunetv2_lightmedseg.network.convolutions import OverlapExpandConv3d
    from nnunetv2_lightmedseg.network.layout import to_channels_last
    torch.manual_seed(0)
    up = OverlapExpandConv3d(5, 3, stride)
    with torch.no_grad():
        up.weight.normal_()
        up.bias.normal_()
    x = to_channels_last(torch.randn(2, 5, 6, 7, 5)).requires_grad_()
    x_ref = x.detach().contiguous().requires_grad_()
    got = up(x, out_size)
    ref = F.conv_transpose3d(x_ref, up.weight, up.bias, up.stride, up.padding)
    ref = ref[:, :, :out_size[0], :out_size[1], :out_size[2]]
    assert got.shape == ref.shape and got.is_contiguous()
    assert got.grad_fn.name() == "_PixelShuffle3dBackward"
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(got, [x, up.weight, up.bias], g),
                    torch.autograd.grad(ref, [x_ref, up.weight, up.bias], g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("stride,out_size", [(2, (10, 14, 9)), ((1, 2, 2), (6, 13, 16)), (2, (12, 16, 16))])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("upsampling", ["blocks", "overlap"])
def test_segmentation_head_crops_before_upsampling_to_the_same_logits(stride, out_size, train, upsampling):
    """``SegmentationHead(x, out_size)`` crops the half-resolution logits before the transposed conv (speed,
    issue 10): the same numbers, and the same gradients, as upsampling everything and cropping the output."""
    from nnunetv2_lightmedseg.network.blocks.seg_head import SegmentationHead
    from nnunetv2_lightmedseg.network.layout import to_channels_last
    torch.manual_seed(0)
    head = SegmentationHead(8, 3, upsample=True, stride=stride, upsampling=upsampling).train(train)
    with torch.no_grad():  # off the trilinear initialisation of the overlapping kernel: every tap matters
        head.seg_layers[1].weight.normal_()
    s = (stride,) * 3 if isinstance(stride, int) else stride
    # two extra input voxels per axis: the overlapping kernel reads one of them, neither kernel the other
    x = to_channels_last(torch.randn(2, 8, *[-(-n // k) + 2 for n, k in zip(out_size, s)], requires_grad=train))
    with torch.set_grad_enabled(train):
        ref = head(x)[:, :, :out_size[0], :out_size[1], :out_size[2]]
        got = head(x, out_size)
    assert got.shape == (2, 3, *out_size) and torch.allclose(got, ref, atol=1e-6, rtol=0)
    if train:
        gy = torch.randn_like(ref)
        g_ref = torch.autograd.grad(ref, [x, *head.parameters()], gy)
        g_got = torch.autograd.grad(got, [x, *head.parameters()], gy)
        assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-5) for a, b in zip(g_got, g_ref))
        assert g_got[0][:, :, -1].abs().sum() == 0  # the extra row of input voxels feeds nothing that is kept
