"""Options of LightMedSeg beyond the paper's default (issue 8): output-resolution reading B, outlier-robust
texture normalisation, deep supervision; the output layers under ``seg_layers`` (fine-tuning) and the
conversion of checkpoints written before that rename; ``config`` rebuilds the model."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.network.blocks.lspm import LocalStructuralPrior
from nnunetv2_lightmedseg.network.blocks.seg_head import LEGACY_HEAD_KEYS
from nnunetv2_lightmedseg.network.variants import DEEP_SUPERVISION, FULL_RESOLUTION_DECODER

OPTIONS = {
    FULL_RESOLUTION_DECODER.name: dict(FULL_RESOLUTION_DECODER.options),
    "texture_norm_median": dict(texture_norm="median"),
    DEEP_SUPERVISION.name: dict(DEEP_SUPERVISION.options),
    "all": dict(**FULL_RESOLUTION_DECODER.options, texture_norm="median", **DEEP_SUPERVISION.options),
    "block_head": dict(head_upsampling="blocks"),
    "block_head_ds": dict(head_upsampling="blocks", texture_norm="median", **DEEP_SUPERVISION.options),
}


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def flops(m, shape):
    """FLOPs of one forward, counted on the meta device (no arithmetic: the paper's 128^3 costs nothing)."""
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m.to("meta").eval()(torch.zeros(shape, device="meta"))
    return fc.get_total_flops()


def test_default_network_is_unchanged_by_the_options():
    # (every variant's parameter count is pinned in tests/test_network.py)
    default = nparams(LightMedSeg(4, 4))
    assert nparams(LightMedSeg(4, 4, texture_norm="median")) == default  # no parameters, no FLOPs
    # deep supervision adds one 1x1x1 conv per supervised stage (widths 16 and 32) and nothing else
    assert nparams(LightMedSeg(4, 4, **DEEP_SUPERVISION.options)) - default == (16 + 1) * 4 + (32 + 1) * 4


def test_full_resolution_decoder_costs_what_its_docstring_says():
    shape = (1, 4, 128, 128, 128)
    full, default = flops(LightMedSeg(4, 4, full_resolution_decoder=True), shape), flops(LightMedSeg(4, 4), shape)
    assert full == pytest.approx(20.751e9, rel=1e-4) and default == pytest.approx(15.548e9, rel=1e-4)


def test_overlapping_head_costs_what_its_docstring_says():
    """Kernel 4 instead of 2 in the head's transposed conv (the default now): 8x its MACs (C x C x 64 per
    half-resolution voxel), +0.47 GFLOPs at 1x4x128^3, still within the paper's 14.64 GFLOPs + 10 %; C x C x 56
    more weights."""
    f = flops(LightMedSeg(4, 4), (1, 4, 128, 128, 128))
    assert f == pytest.approx(15.548e9, rel=1e-4) and f < 14.64e9 * 1.1
    assert flops(LightMedSeg(4, 4, head_upsampling="blocks"), (1, 4, 128, 128, 128)) == pytest.approx(15.078e9, rel=1e-4)
    assert nparams(LightMedSeg(4, 4)) - nparams(LightMedSeg(4, 4, head_upsampling="blocks")) == 4 * 4 * 56
    assert nparams(LightMedSeg(1, 3)) - nparams(LightMedSeg(1, 3, head_upsampling="blocks")) == 3 * 3 * 56


def test_overlapping_head_starts_as_trilinear_upsampling_of_the_logits():
    """At initialisation the 'overlap' head is the 1x1x1 logits upsampled trilinearly (inside the volume; at
    the border the missing neighbour counts as zero), so training starts from a smooth output, not 2^3 blocks."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    m = LightMedSeg(1, 3).eval()
    d = torch.randn(1, 8, 8, 12, 10)
    with torch.no_grad():
        got = m.head(d)
        ref = F.interpolate(m.head.seg_layers[0](d), scale_factor=2, mode="trilinear", align_corners=False)
    assert got.shape == (1, 3, 16, 24, 20)
    torch.testing.assert_close(got[..., 1:-1, 1:-1, 1:-1], ref[..., 1:-1, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("shape", [(2, 1, 40, 56, 40), (1, 2, 17, 33, 20)])
def test_shapes_for_odd_sizes(name, shape):
    m = LightMedSeg(shape[1], 3, **OPTIONS[name]).eval()
    with torch.no_grad():
        y = m(torch.randn(shape))
    if m.deep_supervision:
        assert isinstance(y, list) and len(y) == 3
        for out, scale in zip(y, m.deep_supervision_scales()):
            # the target shapes nnU-Net's DownsampleSegForDSTransform makes: round(size * scale)
            assert out.shape == (shape[0], 3) + tuple(int(round(s * f)) for s, f in zip(shape[2:], scale))
    else:
        assert y.shape == (shape[0], 3) + shape[2:]


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_parameter_receives_a_gradient(name):
    torch.manual_seed(0)
    m = LightMedSeg(2, 3, **OPTIONS[name])
    y = m(torch.randn(2, 2, 32, 32, 32))
    ys = y if isinstance(y, list) else [y]
    sum(o.square().mean() + o[:, 1].mean() for o in ys).backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_deep_supervision_switch_keeps_the_full_resolution_output():
    torch.manual_seed(0)
    m = LightMedSeg(1, 3, deep_supervision=True).eval()
    x = torch.randn(1, 1, 32, 48, 32)
    with torch.no_grad():
        outs = m(x)
        m.deep_supervision = False
        single = m(x)
    assert isinstance(single, torch.Tensor)
    torch.testing.assert_close(single, outs[0], rtol=0, atol=0)
    assert m.deep_supervision_scales() == [[1.0] * 3, [0.5] * 3, [0.25] * 3]
    assert LightMedSeg(1, 3).deep_supervision_scales() == [[1.0] * 3]


def test_robust_texture_norm_ignores_a_single_outlier_voxel():
    torch.manual_seed(0)
    f0 = torch.randn(1, 8, 24, 24, 24)
    spiked = f0.clone()
    spiked[0, :, 12, 12, 12] = 1e4  # one hot voxel (e.g. an artefact)
    for norm, should_move in (("max", True), ("median", False)):
        lspm = LocalStructuralPrior(8, 16, texture_norm=norm)
        with torch.no_grad():
            t, t_spiked = lspm.texture_map(f0), lspm.texture_map(spiked)
        assert (t >= 0).all() and (t < 1).all()
        away = torch.ones_like(t, dtype=torch.bool)
        away[..., 10:15, 10:15, 10:15] = False  # compare outside the spike's 3^3 smoothing footprint
        moved = (t[away] - t_spiked[away]).abs().median()
        assert (moved > 0.05) == should_move, (norm, float(moved))
    with torch.no_grad():
        t = LocalStructuralPrior(8, 16, texture_norm="median").texture_map(f0)
    assert 0.3 < float(t.median()) < 0.7  # centred, unlike max scaling


@pytest.mark.parametrize("kwargs,match", [(dict(texture_norm="minmax"), "texture_norm"),
                                          (dict(lspm_hidden=0), "lspm_hidden"),
                                          (dict(head_upsampling="trilinear"), "head_upsampling")])
def test_invalid_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightMedSeg(1, 2, **kwargs)
    with pytest.raises(TypeError, match="deep_supervision"):
        LightMedSeg(1, 2, deep_supervision="yes")


# one non-default value per constructor argument; each changes the architecture or the output on its own
NON_DEFAULT = {
    "input_channels": 2, "num_classes": 4, "conv_type": "standard", "num_anchors": 4, "use_lspm": False,
    "use_anchors": False, "use_skip_router": False, "encoder_widths": (8, 16, 24, 32), "stem_channels": 16,
    "router_channels": 32, "se_reduction": 4, "lspm_hidden": 16, "texture_norm": "median",
    "full_resolution_decoder": True, "head_upsampling": "blocks", "deep_supervision": True,
    "strides": ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)),
    "kernel_sizes": ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
}


def _rebuilt_and_outputs(m):
    """``m`` rebuilt from its channel counts and ``config`` (what checkpoints and export metadata store), with
    m's weights loaded strictly, and both models' outputs on the same input."""
    rebuilt = LightMedSeg(m.input_channels, m.num_classes, **m.config)
    assert rebuilt.config == m.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    rebuilt.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(1, m.input_channels, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return m.eval()(x), rebuilt.eval()(x)


def test_every_constructor_argument_has_a_non_default_case():
    import inspect
    params = inspect.signature(LightMedSeg.__init__).parameters
    assert set(NON_DEFAULT) == set(params) - {"self"}
    assert set(LightMedSeg(1, 2).config) == set(params) - {"self", "input_channels", "num_classes"}


@pytest.mark.parametrize("name", list(NON_DEFAULT))
def test_config_rebuilds_a_non_default_model(name):
    """A config that missed an argument (lspm_hidden once) would rebuild the default there: different keys,
    shapes or outputs. Each argument alone must therefore change the model, and the rebuild must match it."""
    torch.manual_seed(0)
    m = LightMedSeg(**{"input_channels": 1, "num_classes": 3, name: NON_DEFAULT[name]})
    torch.manual_seed(0)
    default = LightMedSeg(1, 3)
    if {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in default.state_dict().items()}:
        x = torch.randn(1, 1, 16, 32, 32)  # same weights (e.g. texture_norm): the output must differ
        with torch.no_grad():
            assert not torch.allclose(m.eval()(x), default.eval()(x)), name
    a, b = _rebuilt_and_outputs(m)
    for ya, yb in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)


def test_config_rebuilds_a_model_with_every_argument_non_default():
    torch.manual_seed(0)
    # (head_upsampling has no effect here: with the full-resolution decoder the head does not upsample)
    m = LightMedSeg(**dict(NON_DEFAULT, use_lspm=True, use_anchors=True, use_skip_router=True))
    a, b = _rebuilt_and_outputs(m)
    assert isinstance(a, list) and len(a) == len(b) == 3
    for ya, yb in zip(a, b):
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_checkpoint_round_trip(name):
    torch.manual_seed(0)
    m = LightMedSeg(1, 3, **OPTIONS[name]).eval()
    other = LightMedSeg(1, 3, **OPTIONS[name]).eval()
    other.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        a, b = m(x), other(x)
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_checkpoint_from_before_the_seg_layers_rename_loads_strictly():
    torch.manual_seed(0)
    m = LightMedSeg(1, 3, head_upsampling="blocks").eval()  # the head those checkpoints had
    inverse = {new: old for old, new in LEGACY_HEAD_KEYS.items()}
    legacy = {inverse.get(k, k): v for k, v in m.state_dict().items()}
    assert "head.weight" in legacy and "head_up.weight" in legacy
    x = torch.randn(1, 1, 32, 32, 32)
    for fresh in (LightMedSeg(1, 3, head_upsampling="blocks").eval(), LightMedSeg(1, 3).eval()):
        fresh.load_state_dict(dict(legacy), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strides,shape", [(None, (1, 1, 40, 56, 40)),
                                           ([[1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]], (1, 1, 10, 64, 56))])
def test_block_head_checkpoint_loads_into_the_overlapping_head_with_the_same_outputs(strides, shape):
    """Models trained before the overlapping head became the default (kernel = stride) load into today's
    default network strictly (``nnUNetv2_predict`` builds the current default) and predict the same logits:
    their kernel is embedded in the middle of the larger one; it then trains on from there (``--c``)."""
    torch.manual_seed(0)
    old = LightMedSeg(1, 3, head_upsampling="blocks", strides=strides).eval()
    with torch.no_grad():
        old.head.seg_layers[1].weight.normal_()  # off any initialisation the new layer might share
    new = LightMedSeg(1, 3, strides=strides).eval()
    new.load_state_dict(old.state_dict(), strict=True)
    w = new.head.seg_layers[1].weight
    assert tuple(w.shape[2:]) == tuple(4 if s == 2 else 1 for s in new.strides[0])
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, dict(deep_supervision=True)])
def test_nnunet_pretrained_weights_skip_the_output_layers(tmp_path, kwargs):
    """nnU-Net's -pretrained_weights loader skips keys with '.seg_layers.': fine-tuning on another label set."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    torch.manual_seed(0)
    src = LightMedSeg(1, 3, **kwargs)
    ckpt = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": src.state_dict()}, ckpt)
    dst = LightMedSeg(1, 5, **kwargs)
    load_pretrained_weights(dst, str(ckpt), verbose=False)
    s, d = src.state_dict(), dst.state_dict()
    assert all(torch.equal(s[k], d[k]) for k in d if ".seg_layers." not in k)
    assert d["head.seg_layers.0.weight"].shape[0] == 5


def test_numpy_integers_are_accepted_everywhere_and_as_triple_names_bad_values():
    """One positive-int check and one int-or-triple helper for the whole network: numpy integers (what nnU-Net's
    plans give after np.prod/np.array) pass the network as they pass its blocks."""
    import numpy as np
    from nnunetv2_lightmedseg.network.checks import as_triple
    from nnunetv2_lightmedseg.network.blocks.ghost_conv import GhostConv3D

    net = LightMedSeg(np.int64(1), np.int32(3), num_anchors=np.int64(8))
    assert net.num_classes == 3 and net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
    assert as_triple(np.int64(2), "X", "stride") == (2, 2, 2) and as_triple([1, 2, 2], "X", "stride") == (1, 2, 2)
    for bad in ((1, 2), True, 2.0, "3", (1, 2, 2.5)):
        with pytest.raises(ValueError, match="X: stride must be an integer or three integers"):
            as_triple(bad, "X", "stride")
    with pytest.raises(ValueError, match="GhostConv3D: kernel_size must be an integer or three"):
        GhostConv3D(8, 8, kernel_size=(3, 3))
    with pytest.raises(ValueError, match="LightMedSeg: num_classes must be a positive integer"):
        LightMedSeg(1, 0)
