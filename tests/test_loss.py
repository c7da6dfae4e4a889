"""BoundaryCompoundLoss (paper §3.7): band, inverse-frequency weights, both target kinds, degenerate patches."""
import pytest
import torch

from nnunetv2_lightmedseg import BoundaryCompoundLoss
from nnunetv2_lightmedseg.loss.boundary_compound import boundary_band, max_filter3


def _labels(b=2, shape=(16, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(b, 1, *shape, dtype=torch.long)
    for i in range(b):
        c = torch.randint(5, 11, (3,), generator=g)
        t[i, 0, c[0] - 4:c[0] + 4, c[1] - 4:c[1] + 4, c[2] - 4:c[2] + 4] = 2
        t[i, 0, c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = 1
    return t


def _onehot(t, c):
    return torch.zeros(t.shape[0], c, *t.shape[2:]).scatter_(1, t, 1.0)


# --------------------------------------------------------------------------------------------------- band
@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 7), (1, 2, 1, 4, 3), (3, 2, 9, 10)])
def test_max_filter_equals_kernel3_max_pooling(shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    pool = torch.nn.functional.max_pool3d if len(shape) == 5 else torch.nn.functional.max_pool2d
    assert torch.equal(max_filter3(x), pool(x, 3, stride=1, padding=1))
    b = (torch.rand(shape) > 0.7).float()
    assert torch.equal(max_filter3(b), pool(b, 3, stride=1, padding=1))
    assert torch.equal(max_filter3(b.to(torch.uint8)), pool(b, 3, stride=1, padding=1).to(torch.uint8))  # the band's dtype


def test_band_of_a_cube_is_the_two_voxel_shell():
    m = torch.zeros(1, 1, 7, 7, 7)
    m[..., 2:5, 2:5, 2:5] = 1  # 3^3 cube
    band = boundary_band(m)
    expected = torch.zeros_like(m, dtype=torch.bool)
    expected[..., 1:6, 1:6, 1:6] = True  # dilation by the L-inf unit ball: 5^3
    expected[..., 3, 3, 3] = False  # erosion leaves the centre voxel
    assert torch.equal(band, expected)
    assert int(band.sum()) == 5 ** 3 - 1


def test_band_uses_chessboard_neighbourhood_and_ignores_patch_border():
    m = torch.zeros(1, 1, 6, 6, 6)
    m[..., 0, 0, 0] = 1  # a corner voxel: its diagonal neighbour (1,1,1) is in the band (L-inf, not L1)
    band = boundary_band(m)
    assert bool(band[0, 0, 1, 1, 1]) and int(band.sum()) == 8
    full = torch.ones(1, 1, 6, 6, 6)  # a structure filling the patch: the crop's border is not a boundary
    assert not boundary_band(full).any()
    assert not boundary_band(torch.zeros(1, 2, 6, 6, 6)).any()


def test_band_has_no_false_edge_next_to_unknown_voxels():
    m = torch.zeros(1, 1, 8, 8, 8)
    m[..., :4] = 1  # class fills the left half, the right half is unknown (ignore label)
    unknown = torch.zeros(1, 1, 8, 8, 8, dtype=torch.bool)
    unknown[..., 4:] = True
    assert not boundary_band(m, unknown).any()
    # without the unknown mask the same labels have an edge at x=3|4
    assert boundary_band(m)[..., 3:5].all()


# ------------------------------------------------------------------------------------------------ weights
def test_inverse_frequency_class_weights():
    loss = BoundaryCompoundLoss()
    t = torch.zeros(1, 1, 10, 10, 10, dtype=torch.long)
    t[..., :1, :, :] = 1  # 10% class 1, 90% background, class 2 absent
    w = loss.terms(torch.zeros(1, 3, 10, 10, 10), t)["class_weights"]
    # N / (K n_c) with K = 2 present classes; absent class -> neutral 1
    # class 1: 1 / (2 * 0.1) = 5, clamped to the default maximum 3
    assert torch.allclose(w, torch.tensor([1 / (2 * 0.9), 3.0, 1.0]), atol=1e-5)
    wide = BoundaryCompoundLoss(min_class_weight=0.1, max_class_weight=10.0)
    w_wide = wide.terms(torch.zeros(1, 3, 10, 10, 10), t)["class_weights"]
    assert torch.allclose(w_wide, torch.tensor([1 / (2 * 0.9), 1 / (2 * 0.1), 1.0]), atol=1e-5)
    t2 = torch.zeros(1, 1, 10, 10, 10, dtype=torch.long)
    t2[..., 0, 0, 0] = 1  # 0.1% -> 1/(2 * 0.001) = 500, clamped to 3
    w2 = loss.terms(torch.zeros(1, 2, 10, 10, 10), t2)["class_weights"]
    assert w2[1].item() == pytest.approx(3.0) and w2[0].item() == pytest.approx(1000 / (2 * 999))
    t3 = torch.ones(1, 1, 10, 10, 10, dtype=torch.long)
    t3[..., 0, 0, 0] = 0  # background 0.1% -> clamped to 3; class 1 (99.9%) gets 1000 / (2 * 999), above 1/3
    w3 = loss.terms(torch.zeros(1, 2, 10, 10, 10), t3)["class_weights"]
    assert w3[0].item() == pytest.approx(3.0) and w3[1].item() == pytest.approx(1000 / (2 * 999))
    balanced = torch.arange(2).repeat_interleave(500).view(1, 1, 10, 10, 10)
    assert torch.allclose(loss.terms(torch.zeros(1, 2, 10, 10, 10), balanced)["class_weights"], torch.ones(2))


def test_weights_change_the_ce_like_torch_weighted_ce():
    t = _labels()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, 16)
    x[:, 0] += 2.0  # a network that predicts background everywhere: the up-weighted classes' errors must count more
    terms = BoundaryCompoundLoss().terms(x, t)
    ref = torch.nn.functional.cross_entropy(x, t[:, 0], weight=terms["class_weights"])
    assert terms["ce"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert terms["ce"].item() != pytest.approx(torch.nn.functional.cross_entropy(x, t[:, 0]).item(), rel=1e-3)


# ------------------------------------------------------------------------------------ both target kinds
@pytest.mark.parametrize("kind", ["label", "label_ignore", "region", "region_ignore"])
def test_finite_loss_and_gradients_reach_logits(kind):
    t = _labels()
    if kind.startswith("label"):
        loss = BoundaryCompoundLoss(ignore_label=3 if kind == "label_ignore" else None, batch_dice=True)
        target = t.clone()
        if kind == "label_ignore":
            target[..., :3] = 3
        x = torch.randn(2, 3, 16, 16, 16, requires_grad=True)
    else:
        regions = torch.cat([t > 0, t == 1], 1)  # nested regions (whole, core)
        if kind == "region_ignore":
            ign = torch.zeros_like(t, dtype=torch.bool)
            ign[..., :3] = True
            regions = torch.cat([regions, ign], 1)
        loss = BoundaryCompoundLoss(has_regions=True, use_ignore_label=kind == "region_ignore")
        target = regions
        x = torch.randn(2, 2, 16, 16, 16, requires_grad=True)
    terms = loss.terms(x, target)
    assert all(torch.isfinite(terms[k]) and terms[k] > 0 for k in ("dice", "ce", "boundary"))
    val = loss(x, target)
    val.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("case", ["all_background", "all_foreground", "all_ignore"])
def test_degenerate_patches_give_finite_loss(case):
    x = torch.randn(2, 3, 12, 12, 12, requires_grad=True)
    if case == "all_background":
        t = torch.zeros(2, 1, 12, 12, 12, dtype=torch.long)
    elif case == "all_foreground":  # one class everywhere: no boundary anywhere
        t = torch.ones(2, 1, 12, 12, 12, dtype=torch.long)
    else:
        t = torch.full((2, 1, 12, 12, 12), 7, dtype=torch.long)
    loss = BoundaryCompoundLoss(ignore_label=7)
    terms = loss.terms(x, t)
    assert terms["boundary"].item() == 0.0  # no band -> exactly 0
    val = loss(x, t)
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(x.grad).all()
    # region mode, empty regions
    xr = torch.randn(2, 3, 12, 12, 12, requires_grad=True)
    vr = BoundaryCompoundLoss(has_regions=True)(xr, torch.zeros(2, 3, 12, 12, 12, dtype=torch.bool))
    vr.backward()
    assert torch.isfinite(vr) and torch.isfinite(xr.grad).all()


def test_extreme_logits_stay_finite():
    t = _labels()
    x = (_onehot(t, 3) * 200 - 100).requires_grad_()  # softmax saturates: p rounds to exactly 0/1
    val = BoundaryCompoundLoss()(x, t)
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(x.grad).all()
    wrong = (_onehot((t + 1) % 3, 3) * 200 - 100).requires_grad_()
    v2 = BoundaryCompoundLoss()(wrong, t)
    v2.backward()
    assert torch.isfinite(v2) and torch.isfinite(wrong.grad).all() and v2 > val


@pytest.mark.parametrize("has_regions", [False, True])
def test_loss_decreases_as_logits_match_the_target(has_regions):
    t = _labels()
    if has_regions:
        target = torch.cat([t > 0, t == 1], 1)
        y = target.float()
    else:
        target = t
        y = _onehot(t, 3)
    loss = BoundaryCompoundLoss(has_regions=has_regions)
    noise = torch.randn_like(y)
    values = [loss(k * (2 * y - 1) + noise, target).item() for k in (0.0, 1.0, 3.0, 8.0)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    for term in ("dice", "ce", "boundary"):
        lo = loss.terms(8 * (2 * y - 1), target)[term].item()
        hi = loss.terms(-8 * (2 * y - 1), target)[term].item()
        assert lo < hi, term


def test_bf16_autocast_cpu_is_finite_and_fp32():
    t = _labels()
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(x)
        assert logits.dtype == torch.bfloat16
        val = BoundaryCompoundLoss()(logits, t)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    val.backward()
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


def test_bad_inputs_have_clear_errors():
    loss = BoundaryCompoundLoss()
    x = torch.randn(1, 3, 8, 8, 8)
    with pytest.raises(TypeError, match="deep supervision"):
        loss([x, x], [torch.zeros(1, 1, 8, 8, 8)] * 2)
    with pytest.raises(ValueError, match="label mode"):
        loss(x, torch.zeros(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="region mode"):
        BoundaryCompoundLoss(has_regions=True)(x, torch.zeros(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="use_ignore_label"):
        BoundaryCompoundLoss(has_regions=True, ignore_label=2)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("kind", ["label", "label_ignore", "region", "region_ignore"])
def test_dice_term_with_unit_weights_is_nnunets_memory_efficient_soft_dice(kind, batch_dice):
    """With every class weight 1 (clamp [1, 1]) the Dice term is nnU-Net's own soft Dice, as nnU-Net's
    DC_and_CE_loss / DC_and_BCE_loss call it (softmax without background / sigmoid on every region, smooth 1e-5,
    ignore label as loss mask), reported as 1 + its (negative) value."""
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    t = _labels()
    logits = torch.randn(2, 3 if kind.startswith("label") else 2, 16, 16, 16,
                         generator=torch.Generator().manual_seed(1))
    mask = None
    if kind == "label_ignore":
        target = t.clone()
        target[:, :, :3] = 3  # label 3 = ignore
        mask = target != 3
        ours = BoundaryCompoundLoss(ignore_label=3, batch_dice=batch_dice, min_class_weight=1, max_class_weight=1)
    elif kind == "label":
        target = t
        ours = BoundaryCompoundLoss(batch_dice=batch_dice, min_class_weight=1, max_class_weight=1)
    else:
        target = torch.cat([t > 0, t == 1], 1).float()
        if kind == "region_ignore":
            ignore = torch.zeros_like(target[:, :1])
            ignore[:, :, :3] = 1
            mask = ignore == 0
            target = torch.cat([target, ignore], 1)
        ours = BoundaryCompoundLoss(has_regions=True, use_ignore_label=mask is not None, batch_dice=batch_dice,
                                    min_class_weight=1, max_class_weight=1)
    terms = ours.terms(logits, target)
    assert torch.equal(terms["class_weights"], torch.ones_like(terms["class_weights"]))
    if kind.startswith("label"):
        nnunet = MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, batch_dice=batch_dice, do_bg=False,
                                             smooth=1e-5, ddp=False)
        reference = nnunet(logits, torch.where(mask, target, 0) if mask is not None else target, loss_mask=mask)
    else:
        nnunet = MemoryEfficientSoftDiceLoss(apply_nonlin=torch.sigmoid, batch_dice=batch_dice, do_bg=True,
                                             smooth=1e-5, ddp=False)
        reference = nnunet(logits, target[:, :2], loss_mask=mask)
    assert float(terms["dice"]) == pytest.approx(1 + float(reference), abs=1e-6)


@pytest.mark.parametrize("ignore", [None, 3])
def test_label_band_term_equals_the_full_tensor_formula(ignore):
    """The label-mode boundary term runs on the band voxels alone (speed, issue 10): same value and gradient as
    the straightforward per-class band mean of ``-[y log p + (1 - y) log(1 - p)]`` over full tensors."""
    t = _labels(b=3, shape=(12, 14, 10), seed=3)
    if ignore is not None:
        t[..., :2] = ignore
    loss = BoundaryCompoundLoss(ignore_label=ignore)
    x = torch.randn(3, 3, 12, 14, 10, requires_grad=True)  # the loss computes in float32
    got = loss.terms(x, t)
    g_got, = torch.autograd.grad(got["boundary"], x)

    valid = None if ignore is None else t != ignore
    labels = t if valid is None else torch.where(valid, t, torch.zeros_like(t))
    y = _onehot(labels, 3).double()
    if valid is not None:
        y = y * valid
    band = boundary_band(y[:, 1:], None if valid is None else ~valid)
    p = torch.softmax(x.double(), 1)[:, 1:]
    bce = -(y[:, 1:] * torch.log(p) + (1 - y[:, 1:]) * torch.log(1 - p))
    size = band.double().sum((0, 2, 3, 4))
    per_class = (bce * band).sum((0, 2, 3, 4)) / size
    w = got["class_weights"][1:].double()
    ref = (per_class * w).sum() / w.sum()
    g_ref, = torch.autograd.grad(ref, x)
    assert size.min() > 0 and ref > 0
    assert torch.allclose(got["boundary"].double(), ref, rtol=1e-5, atol=0)
    assert torch.allclose(g_got, g_ref, rtol=1e-4, atol=1e-6 * float(g_ref.abs().max()))
    assert g_ref[:, 0].abs().sum() > 0  # the softmax couples the background's logit to the band term
