"""Whole-network tests of LightMedSeg: budget, shapes, gradients, invariants, dtypes, export paths."""
import pytest
import torch

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.network.variants import (ANCHORS16, ANCHORS32, BLOCK_HEAD, DEEP_SUPERVISION, DEFAULT,
                                                   FULL_RESOLUTION_DECODER, ISOTROPIC, NO_ANCHORS, NO_LSPM,
                                                   NO_SKIP_ROUTER, PAPER, STANDARD_CONV, NETWORK_VARIANTS)

# Pinned parameter counts of LightMedSeg(4, 4, **variant.options), for every registered variant. A change here is
# a change of the architecture: update deliberately, with the paper's figures (PAPER_MILLIONS) in mind.
PINNED = {
    DEFAULT: 470_667,
    STANDARD_CONV: 688_179,
    NO_LSPM: 462_526,
    NO_ANCHORS: 448_947,
    NO_SKIP_ROUTER: 431_759,
    ANCHORS16: 486_243,
    ANCHORS32: 517_395,
    FULL_RESOLUTION_DECODER: 470_535,
    DEEP_SUPERVISION: 470_867,
    ISOTROPIC: 470_667,
    BLOCK_HEAD: 469_771,  # the default before the overlapping head (kernel 2 instead of 4: 4 x 4 x 56 fewer)
}
# The paper's totals in millions (0.48M / 0.66M, anchor ablation 0.48M -> 0.49M -> 0.52M) and the relative
# deviation allowed from them
PAPER_MILLIONS = {DEFAULT: (0.48, 0.03), STANDARD_CONV: (0.66, 0.05), ANCHORS16: (0.49, 0.03),
                  ANCHORS32: (0.52, 0.03)}


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def _name(variant):
    return variant.name


@pytest.mark.parametrize("variant", list(NETWORK_VARIANTS.values()), ids=_name)
def test_parameter_counts_are_pinned(variant):
    assert nparams(LightMedSeg(4, 4, **variant.options)) == PINNED[variant]


@pytest.mark.parametrize("variant", list(PAPER_MILLIONS), ids=_name)
def test_parameter_budget_matches_the_paper(variant):
    millions, tolerance = PAPER_MILLIONS[variant]
    assert abs(nparams(LightMedSeg(4, 4, **variant.options)) / (millions * 1e6) - 1) < tolerance


def test_anchor_detector_has_the_papers_8640_parameters():
    assert LightMedSeg(4, 4).parameter_breakdown()["anchor_detector"] == 8640


@pytest.mark.slow
def test_flops_match_the_paper_at_4x128():
    from torch.utils.flop_counter import FlopCounterMode
    # on the meta device, as count_flops does: the operations of the mathematics (on the CPU the overlapping
    # head runs as a sub-pixel convolution whose zero taps the counter would count too)
    m = LightMedSeg(4, 4).to("meta").eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 4, 128, 128, 128, device="meta"))
    flops = fc.get_total_flops()  # torch counts 2 FLOPs per multiply-accumulate
    assert abs(flops / 14.64e9 - 1) < 0.10, flops


@pytest.mark.parametrize("shape,classes", [((1, 1, 40, 56, 40), 3), ((2, 4, 35, 50, 35), 4),
                                           ((1, 2, 16, 16, 16), 2), ((1, 1, 17, 33, 20), 5)])
def test_output_has_the_input_spatial_size(shape, classes):
    m = LightMedSeg(shape[1], classes).eval()
    with torch.no_grad():
        y = m(torch.randn(shape))
    assert y.shape == (shape[0], classes) + shape[2:]
    assert torch.isfinite(y).all()


@pytest.mark.slow
def test_full_paper_size_input():
    m = LightMedSeg(4, 4).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 4, 128, 128, 128))
    assert y.shape == (1, 4, 128, 128, 128)


@pytest.mark.parametrize("shape", [(1, 1, 15, 32, 32), (1, 1, 32, 8, 32)])
def test_too_small_input_names_the_minimum(shape):
    with pytest.raises(ValueError, match="at least 16"):
        LightMedSeg(1, 2)(torch.randn(shape))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="built for 4 input channel"):
        LightMedSeg(4, 2)(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="5-D input"):
        LightMedSeg(1, 2)(torch.randn(1, 16, 16, 16))


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_channels=0, num_classes=2), "input_channels"),
    (dict(input_channels=1, num_classes=-1), "num_classes"),
    (dict(input_channels=1, num_classes=2, num_anchors=0), "num_anchors"),
    (dict(input_channels=1, num_classes=2, conv_type="depthwise"), "conv_type"),
    (dict(input_channels=1, num_classes=2, encoder_widths=(16, 32, 64)), "encoder_widths"),
    (dict(input_channels=1, num_classes=2, encoder_widths=(12, 32, 64, 128)), "encoder_widths"),
    (dict(input_channels=1.5, num_classes=2), "input_channels"),
])
def test_invalid_arguments_raise_with_a_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightMedSeg(**kwargs)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="use_attention"):
        LightMedSeg(1, 2, use_attention=True)


@pytest.mark.parametrize("variant", PAPER, ids=_name)
def test_every_parameter_receives_a_gradient(variant):
    torch.manual_seed(0)
    m = LightMedSeg(2, 3, **variant.options)
    x = torch.randn(2, 2, 32, 32, 32)
    y = m(x)
    # a loss that depends on every output voxel and class
    (y.square().mean() + y[:, 1].mean()).backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient in {variant.name}: {dead}"


def test_ablations_remove_their_modules():
    assert LightMedSeg(1, 2, **NO_LSPM.options).lspm is None
    m = LightMedSeg(1, 2, **NO_ANCHORS.options)
    assert m.anchor_detector is None
    assert all(s.film is None for s in m.encoder) and all(s.pos is None for s in m.decoder)
    assert LightMedSeg(1, 2, **NO_SKIP_ROUTER.options).parameter_breakdown()["skip_router"] == 0


def test_intermediates_anchors_and_weights():
    m = LightMedSeg(1, 3).eval()
    with torch.no_grad():
        info = m.forward_with_intermediates(torch.randn(2, 1, 40, 56, 40))
    a = info["anchors"]
    assert a.shape == (2, 8, 3) and (a >= 0).all() and (a <= 1).all()
    assert info["logits"].shape == (2, 3, 40, 56, 40)
    # padded to multiples of 16: 48 x 64 x 48 -> stem grid 24 x 32 x 24
    assert info["texture"].shape == (2, 1, 24, 32, 24) and info["gate"].shape == (2, 1, 24, 32, 24)
    for k, grid in ((1, (6, 8, 6)), (2, (12, 16, 12))):
        w = info[f"router_weights_stage{k}"]
        assert w.shape == (2, 4) + grid
        torch.testing.assert_close(w.sum(1), torch.ones((2,) + grid))
    for k in range(1, 5):
        w = info[f"blend_weights_stage{k}"]
        assert w.shape[1] == 3
        torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]))
    with torch.no_grad():
        torch.testing.assert_close(m(torch.zeros(1, 1, 16, 16, 16)),
                                   m.forward_with_intermediates(torch.zeros(1, 1, 16, 16, 16))["logits"])


def test_eval_output_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    m = LightMedSeg(1, 2).eval()
    x = torch.randn(2, 1, 32, 48, 32)
    with torch.no_grad():
        a, b = m(x), m(x)
        single = m(x[1:])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[1:], single, rtol=1e-4, atol=1e-5)


def test_channels_last_and_default_layout_agree():
    m = LightMedSeg(1, 2).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        y1 = m(x)
        y2 = m.to(memory_format=torch.channels_last_3d)(x)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)
    assert y2.is_contiguous()


def test_bf16_autocast_gives_finite_output_and_gradients():
    # CPU bf16 autocast. The forward runs with oneDNN (as users run it); the backward with oneDNN off, because
    # oneDNN's bf16 weight-gradient kernel for a 3x3x3 conv over a 2^3 grid (encoder stage 4 at 32^3) returns NaN
    # in 128 of its 110,592 entries on some runs with *identical* inputs when 2 threads are used (torch 2.14,
    # oneDNN 3.12; never with 1 thread, never with oneDNN disabled): an upstream kernel race, not this network's
    # mathematics. nnU-Net never trains with CPU autocast (it autocasts on CUDA only); fp32 is unaffected.
    torch.manual_seed(0)
    m = LightMedSeg(2, 3)
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m(x).float()).all()
    with torch.backends.mkldnn.flags(enabled=False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
            loss = y.float().square().mean()
        loss.backward()
    assert torch.isfinite(y.float()).all()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert [n for n, g in grads.items() if not torch.isfinite(g).all()] == []


def test_torch_jit_trace_matches_eager():
    m = LightMedSeg(1, 2).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(m, x)
        torch.testing.assert_close(traced(x), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torch_export_with_dynamic_spatial_size():
    m = LightMedSeg(1, 2).eval()
    x = torch.randn(2, 1, 32, 32, 32)  # batch 2: torch.export specialises sizes 0/1
    dims = {2: torch.export.Dim("d", min=1, max=32) * 16, 3: torch.export.Dim("h", min=1, max=32) * 16,
            4: torch.export.Dim("w", min=1, max=32) * 16}
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=8), **dims},))
    x2 = torch.randn(3, 1, 48, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x2), m(x2), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_runs_and_matches_eager():
    m = LightMedSeg(1, 2).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-3, atol=1e-4)
